/*
 * cvisits — an atf lambda in C: counts visits per name in the namespace's
 * key-value store. Payload: a name; output: "<name> visit #<n>".
 *
 *   clang --target=wasm32-wasi -O2 -I sdk/guest/c -o examples/cvisits/cvisits.wasm examples/cvisits/cvisits.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atf.h"

int main(void) {
  char name[256];
  size_t n = fread(name, 1, sizeof name - 1, stdin);
  name[n] = 0;
  if (n == 0) strcpy(name, "world");

  char key[300];
  snprintf(key, sizeof key, "visits:%s", name);

  int32_t span = atf_span_start_str(0, "count visit");
  char buf[32];
  long visits = 0;
  int32_t rc = atf_kv_get_str(key, buf, sizeof buf);
  if (rc >= 0) {
    visits = strtol(buf, NULL, 10);
  } else if (rc != ATF_ERR_NOT_FOUND) {
    fprintf(stderr, "kv_get failed: %d\n", rc);
    return 75; /* retry later */
  }
  visits++;
  snprintf(buf, sizeof buf, "%ld", visits);
  rc = atf_kv_set_str(key, buf, 0);
  atf_span_end(span, rc < 0, "", 0);
  if (rc < 0) {
    fprintf(stderr, "kv_set failed: %d\n", rc);
    return 75;
  }
  atf_log_str(ATF_INFO, "counted a visit");
  atf_progress(100);
  printf("%s visit #%ld\n", name, visits);
  return 0;
}
