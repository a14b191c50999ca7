// CPU-bound: N rounds (the payload, default 300000000) of xorshift64, the
// result printed so the loop cannot be optimised away. The benchmark of the
// time limit's cost runs it instrumented and in plain wazero.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(void) {
	char buf[32] = {0};
	size_t n = fread(buf, 1, sizeof buf - 1, stdin);
	buf[n] = 0;
	uint64_t rounds = n > 0 ? strtoull(buf, NULL, 10) : 300000000ULL;
	uint64_t x = 88172645463325252ULL;
	for (uint64_t i = 0; i < rounds; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
	}
	printf("%llu\n", (unsigned long long)x);
	return 0;
}
