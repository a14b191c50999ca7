/*
 * reactortaskenv: a C reactor on atf.h that answers its task's
 * ATF_TASK_ID and ATF_ATTEMPT as "<id>;<attempt>" (atf_task_env_str); a
 * variable it cannot read is "!<code>".
 */
#include <stdio.h>
#include <unistd.h>

#include "../../../sdk/guest/c/atf.h"

static void put(const char *name) {
	char buf[128];
	int32_t n = atf_task_env_str(name, buf, sizeof buf);
	if (n < 0) n = snprintf(buf, sizeof buf, "!%d", (int)n);
	write(1, buf, (size_t)n);
}

__attribute__((export_name("atf_handle"))) int atf_handle(int payload_len) {
	(void)payload_len;
	put("ATF_TASK_ID");
	write(1, ";", 1);
	put("ATF_ATTEMPT");
	return 0;
}
