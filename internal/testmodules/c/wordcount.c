// CPU-bound string code: counts the words of a generated text (N words, the
// payload, default 2000000, drawn from a vocabulary of 5000 words of 3-12
// letters) in an open-addressing hash table: per word, libc strlen and
// strcmp (each a loop in its own function) and an FNV-1a hash in a small
// looping helper. Prints the number of distinct words and a checksum of
// the counts. The benchmark of the time limit's cost runs it instrumented
// and in plain wazero.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VOCAB 5000
#define SLOTS 16384 // power of two, > 2 * VOCAB

#include "xorshift32.h"

// Out of line, as a hash in another compilation unit would be.
__attribute__((noinline)) static uint32_t fnv1a(const char *s, size_t n) {
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)s[i];
		h *= 16777619u;
	}
	return h;
}

static const char *keys[SLOTS];
static uint32_t counts[SLOTS];

int main(void) {
	char buf[32] = {0};
	size_t n = fread(buf, 1, sizeof buf - 1, stdin);
	buf[n] = 0;
	size_t words = n > 0 ? strtoull(buf, NULL, 10) : 2000000;

	static char vocab[VOCAB][13];
	for (int v = 0; v < VOCAB; v++) {
		int len = 3 + next() % 10;
		for (int i = 0; i < len; i++) {
			vocab[v][i] = 'a' + next() % 26;
		}
		vocab[v][len] = 0;
	}
	// The text: words separated by NULs.
	char *text = malloc(words * 13);
	if (text == NULL) {
		return 1;
	}
	char *p = text;
	for (size_t w = 0; w < words; w++) {
		const char *s = vocab[next() % VOCAB];
		size_t len = strlen(s);
		memcpy(p, s, len + 1);
		p += len + 1;
	}
	char *end = p;

	size_t distinct = 0;
	for (p = text; p < end;) {
		size_t len = strlen(p);
		uint32_t i = fnv1a(p, len) & (SLOTS - 1);
		while (keys[i] != NULL && strcmp(keys[i], p) != 0) {
			i = (i + 1) & (SLOTS - 1);
		}
		if (keys[i] == NULL) {
			keys[i] = p;
			distinct++;
		}
		counts[i]++;
		p += len + 1;
	}
	uint64_t sum = 0;
	for (int i = 0; i < SLOTS; i++) {
		sum = sum * 31 + counts[i];
	}
	printf("%zu %llu\n", distinct, (unsigned long long)sum);
	return 0;
}
