/*
 * atf.h — the atf_v1 host functions for C guests (clang --target=wasm32-wasi).
 *
 * Header-only. Each atf_* function is the raw import, exactly as
 * sdk/guest/ABI.md defines it; the atf_*_str helpers take NUL-terminated
 * strings. Results of variable size (a KV value, an HTTP response, a task
 * id) are read with atf_result_read after the call that produced them;
 * atf_task_env copies into the caller's buffer.
 *
 *   clang --target=wasm32-wasi -O2 -I sdk/guest/c -o my.wasm my.c
 */
#ifndef ATF_H
#define ATF_H

#include <stdint.h>
#include <string.h>

#define ATF_IMPORT(name) __attribute__((import_module("atf_v1"), import_name(name)))

/* Result codes: >= 0 success, < 0 an error the guest handles. */
enum {
  ATF_OK = 0,
  ATF_ERR_DENIED = -1,      /* HTTP host not in allowed_hosts */
  ATF_ERR_NOT_FOUND = -2,   /* no such key / lambda */
  ATF_ERR_TOO_LARGE = -3,   /* value, body or response over its limit */
  ATF_ERR_INVALID = -4,     /* bad argument value */
  ATF_ERR_UNAVAILABLE = -5, /* service down or not offered; retry later */
  ATF_ERR_TIMEOUT = -6,     /* the call's timeout passed */
  ATF_ERR_LIMIT = -7        /* a per-task budget (log bytes, spans) is spent */
};

enum { ATF_DEBUG = 0, ATF_INFO = 1, ATF_WARN = 2, ATF_ERROR = 3 };

/* The 12 bytes http_request writes at response_ptr. */
typedef struct {
  uint32_t status;
  uint32_t headers_len;
  uint32_t body_len;
} atf_http_response;

ATF_IMPORT("log") int32_t atf_log(int32_t level, const char *msg, uint32_t msg_len);
/* 0: go on; 1: the task was cancelled, stop soon. */
ATF_IMPORT("progress") int32_t atf_progress(int32_t percent);
ATF_IMPORT("span_start") int32_t atf_span_start(int32_t parent, const char *name, uint32_t name_len);
ATF_IMPORT("span_set_attribute") int32_t atf_span_set_attribute(int32_t span, const char *key, uint32_t key_len,
                                                                const char *val, uint32_t val_len);
ATF_IMPORT("span_end") int32_t atf_span_end(int32_t span, int32_t is_error, const char *msg, uint32_t msg_len);
ATF_IMPORT("http_request") int32_t atf_http_request(const char *method, uint32_t method_len,
                                                    const char *url, uint32_t url_len,
                                                    const char *headers, uint32_t headers_len,
                                                    const void *body, uint32_t body_len,
                                                    int32_t timeout_ms, atf_http_response *response);
ATF_IMPORT("result_read") int32_t atf_result_read(void *buf, uint32_t buf_len);
/* The task's environment variable name (ATF_TASK_ID, ATF_ATTEMPT,
 * TRACEPARENT, ATF_LAMBDA): returns the value's length and copies it to buf
 * when that length is <= buf_len (else copies nothing: call again with a
 * larger buffer); ATF_ERR_NOT_FOUND when it is not set. A reactor must use
 * it: its WASI environment (getenv) holds only ATF_LAMBDA. */
ATF_IMPORT("task_env") int32_t atf_task_env(const char *name, uint32_t name_len, char *buf, uint32_t buf_len);
ATF_IMPORT("kv_get") int32_t atf_kv_get(const char *key, uint32_t key_len, uint32_t *value_len);
ATF_IMPORT("kv_set") int32_t atf_kv_set(const char *key, uint32_t key_len, const void *val, uint32_t val_len,
                                        int64_t ttl_ms);
ATF_IMPORT("kv_delete") int32_t atf_kv_delete(const char *key, uint32_t key_len);
ATF_IMPORT("schedule") int32_t atf_schedule(const char *lambda, uint32_t lambda_len,
                                            const void *payload, uint32_t payload_len, int64_t delay_ms,
                                            const char *key, uint32_t key_len, uint32_t *id_len);

/* Helpers over NUL-terminated strings. */
static inline int32_t atf_log_str(int32_t level, const char *msg) {
  return atf_log(level, msg, (uint32_t)strlen(msg));
}

static inline int32_t atf_span_start_str(int32_t parent, const char *name) {
  return atf_span_start(parent, name, (uint32_t)strlen(name));
}

/* Reads the pending result into buf (up to cap bytes); returns the count. */
static inline uint32_t atf_result_read_all(void *buf, uint32_t cap) {
  uint32_t off = 0;
  while (off < cap) {
    int32_t n = atf_result_read((char *)buf + off, cap - off);
    if (n <= 0) break;
    off += (uint32_t)n;
  }
  return off;
}

/* task_env into buf as a NUL-terminated string: returns the value's
 * length, ATF_ERR_TOO_LARGE when it and its NUL do not fit in cap bytes
 * (buf is then ""), or another ATF_ERR_* code. */
static inline int32_t atf_task_env_str(const char *name, char *buf, uint32_t cap) {
  if (cap == 0) return ATF_ERR_TOO_LARGE;
  buf[0] = 0;
  int32_t n = atf_task_env(name, (uint32_t)strlen(name), buf, cap - 1);
  if (n < 0) return n;
  if ((uint32_t)n > cap - 1) return ATF_ERR_TOO_LARGE;
  buf[n] = 0;
  return n;
}

/* kv_get into buf (NUL-terminated when it fits); returns the value's
 * length or an ATF_ERR_* code. */
static inline int32_t atf_kv_get_str(const char *key, char *buf, uint32_t cap) {
  uint32_t len = 0;
  int32_t rc = atf_kv_get(key, (uint32_t)strlen(key), &len);
  if (rc < 0) return rc;
  uint32_t got = atf_result_read_all(buf, cap);
  if (got < cap) buf[got] = 0;
  return (int32_t)len;
}

static inline int32_t atf_kv_set_str(const char *key, const char *val, int64_t ttl_ms) {
  return atf_kv_set(key, (uint32_t)strlen(key), val, (uint32_t)strlen(val), ttl_ms);
}

#endif /* ATF_H */
