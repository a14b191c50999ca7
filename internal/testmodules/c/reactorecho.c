/* A C reactor (clang --target=wasm32-wasi -mexec-model=reactor): atf_handle
 * copies the task's payload from stdin to stdout. read(2) on fd 0, not
 * stdio's FILE, whose EOF flag would stick from one task to the next. */
#include <unistd.h>

__attribute__((export_name("atf_handle"))) int atf_handle(int payload_len) {
	char buf[4096];
	ssize_t n;
	(void)payload_len;
	while ((n = read(0, buf, sizeof buf)) > 0) {
		if (write(1, buf, (size_t)n) != n) {
			return 1;
		}
	}
	return n < 0 ? 1 : 0;
}
