// CPU-bound scanner: tokenizes a generated program text (N lines, the
// payload, default 300000, of statements like "let x12 = (abc + 4711) * y;")
// with small looping helpers for blanks, identifiers, numbers and the
// keyword table, as a hand-written lexer does, and folds every token into
// a checksum. The benchmark of the time limit's cost runs it instrumented
// and in plain wazero.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xorshift32.h"

static const char *const keywords[] = {"let", "if", "else", "while", "return", "fn", "for", "in"};
#define NKEYWORDS (sizeof keywords / sizeof keywords[0])

// The helpers stay out of line, as a lexer's do when each is called from
// several places; every one of them loops.
__attribute__((noinline)) static const char *skip_blank(const char *p) {
	while (*p == ' ' || *p == '\t' || *p == '\n') {
		p++;
	}
	return p;
}

__attribute__((noinline)) static const char *scan_ident(const char *p) {
	while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_') {
		p++;
	}
	return p;
}

__attribute__((noinline)) static const char *scan_number(const char *p, uint32_t *v) {
	uint32_t x = 0;
	while (*p >= '0' && *p <= '9') {
		x = x * 10 + (uint32_t)(*p - '0');
		p++;
	}
	*v = x;
	return p;
}

__attribute__((noinline)) static int keyword(const char *s, size_t n) {
	for (size_t k = 0; k < NKEYWORDS; k++) {
		const char *w = keywords[k];
		size_t i = 0;
		while (i < n && w[i] == s[i]) {
			i++;
		}
		if (i == n && w[i] == 0) {
			return (int)k + 1;
		}
	}
	return 0;
}

static char *gen(size_t lines) {
	static const char *const names[] = {"x", "y", "abc", "count", "value_2", "tmp", "i", "result"};
	char *text = malloc(lines * 64 + 1);
	if (text == NULL) {
		return NULL;
	}
	char *p = text;
	for (size_t l = 0; l < lines; l++) {
		switch (next() % 4) {
		case 0:
			p += sprintf(p, "let %s%u = (%s + %u) * %s;\n", names[next() % 8], next() % 100, names[next() % 8], next() % 10000, names[next() % 8]);
			break;
		case 1:
			p += sprintf(p, "if %s < %u { return %s; }\n", names[next() % 8], next() % 1000, names[next() % 8]);
			break;
		case 2:
			p += sprintf(p, "\twhile %s != 0 { %s = %s - 1; }\n", names[next() % 8], names[next() % 8], names[next() % 8]);
			break;
		default:
			p += sprintf(p, "for %s in %s { fn%u(%s, %u); }\n", names[next() % 8], names[next() % 8], next() % 50, names[next() % 8], next() % 100000);
		}
	}
	*p = 0;
	return text;
}

int main(void) {
	char buf[32] = {0};
	size_t n = fread(buf, 1, sizeof buf - 1, stdin);
	buf[n] = 0;
	size_t lines = n > 0 ? strtoull(buf, NULL, 10) : 300000;
	char *text = gen(lines);
	if (text == NULL) {
		return 1;
	}
	uint64_t sum = 0, tokens = 0;
	for (const char *p = skip_blank(text); *p != 0; p = skip_blank(p)) {
		uint32_t v = 0;
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '_') {
			const char *e = scan_ident(p);
			int k = keyword(p, (size_t)(e - p));
			v = k != 0 ? (uint32_t)k : (uint32_t)(e - p) * 257 + (unsigned char)*p;
			p = e;
		} else if (*p >= '0' && *p <= '9') {
			p = scan_number(p, &v);
		} else {
			v = (unsigned char)*p++;
		}
		sum = sum * 31 + v;
		tokens++;
	}
	printf("%llu %llu\n", (unsigned long long)tokens, (unsigned long long)sum);
	return 0;
}
