// CPU-bound, call-heavy: qsort (wasi-libc's, musl's smoothsort) of N ints
// (the payload, default 1000000) from a xorshift generator, compared
// through a function pointer (a call_indirect per comparison), then a
// checksum of the sorted array printed so nothing is optimised away. The
// benchmark of the time limit's cost runs it instrumented and in plain
// wazero.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int cmp(const void *a, const void *b) {
	int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
	return (x > y) - (x < y);
}

int main(void) {
	char buf[32] = {0};
	size_t n = fread(buf, 1, sizeof buf - 1, stdin);
	buf[n] = 0;
	size_t count = n > 0 ? strtoull(buf, NULL, 10) : 1000000;
	int32_t *a = malloc(count * sizeof *a);
	if (a == NULL) {
		return 1;
	}
	uint32_t x = 2463534242u;
	for (size_t i = 0; i < count; i++) {
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		a[i] = (int32_t)x;
	}
	qsort(a, count, sizeof *a, cmp);
	uint64_t sum = 0;
	for (size_t i = 0; i < count; i++) {
		if (i > 0 && a[i - 1] > a[i]) {
			printf("not sorted at %zu\n", i);
			return 1;
		}
		sum = sum * 31 + (uint32_t)a[i];
	}
	printf("%llu\n", (unsigned long long)sum);
	return 0;
}
