// A xorshift32 generator for the benchmark modules' generated inputs:
// deterministic, so a plain and an instrumented run print the same.
#include <stdint.h>

static uint32_t rng = 2463534242u;

static uint32_t next(void) {
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}
