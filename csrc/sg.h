/* Internal interface shared by the C files of skewguard.core. */
#ifndef SG_H
#define SG_H

#include <stddef.h>
#include <stdint.h>
#include "compat.h"

#define SG_EXPORT __attribute__((visibility("default")))

/* Each part of the core registers its functions and classes into the module
 * table that is on the top of the stack. */
void sg_open_clock(lua_State *L);
void sg_open_secret(lua_State *L);   /* fingerprint */
void sg_open_b64(lua_State *L);      /* b64url_encode, b64url_decode */
void sg_open_jwt(lua_State *L);      /* jwt_payload */
void sg_open_httpdate(lua_State *L); /* parse_http_date, format_http_date, parse_retry_after */
void sg_open_pkce(lua_State *L);     /* pkce_verifier, pkce_challenge */
void sg_open_skew(lua_State *L);     /* skew_new and the skewguard.skew class */
void sg_open_sntp(lua_State *L);    /* sntp_request, sntp_query, the skewguard.sntp_exchange class */
void sg_open_token(lua_State *L);    /* token and the skewguard.token class */
void sg_open_http(lua_State *L);     /* http, sleep, curl_version and the skewguard.http class */
void sg_open_redis(lua_State *L);    /* redis_format, redis_reader, random_hex */
void sg_open_seal(lua_State *L);     /* seal, unseal */
void sg_open_x509(lua_State *L);     /* x509_check_host */

/* Clocks (clock.c): float seconds. */
double sg_monotonic(void);
double sg_wall(void);

/* Create a metatable named `tname` whose __index is a table of `methods`;
 * `meta` holds the metamethods (__gc, __tostring, __close...). Leaves nothing
 * on the stack. On 5.4 `__close` should be in `meta` when the type owns a resource. */
void sg_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                 const luaL_Reg *meta);

/* Secrets and encodings (secret.c). */
#define SG_FINGERPRINT_LEN 8
void sg_wipe(void *p, size_t n);                      /* OPENSSL_cleanse */
/* First 8 hex digits of SHA-256: tells tokens apart in logs, reveals nothing. */
void sg_fingerprint(const void *secret, size_t n, char out[SG_FINGERPRINT_LEN + 1]);
int sg_random_bytes(unsigned char *buf, size_t n);   /* CSPRNG; 1 on success */
/* Standard base64 with padding; `out` needs 4*((n+2)/3)+1 bytes. Returns length. */
size_t sg_b64_encode(const unsigned char *in, size_t n, char *out);
/* base64url without padding, NUL-terminated; same buffer size rule. */
size_t sg_b64url_encode(const unsigned char *in, size_t n, char *out);

/* Strict base64url decoding (b64.c): url alphabet, padding optional but only
 * as a whole group, no stray bits. `out` needs SG_B64_DECODED_MAX(n) bytes. */
#define SG_B64_OK 0
#define SG_B64_BADCHAR 1
#define SG_B64_BADLEN 2
#define SG_B64_BADPAD 3
#define SG_B64_BADBITS 4
#define SG_B64_DECODED_MAX(n) ((((n) + 3) / 4) * 3 + 1)
int sg_b64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen);
const char *sg_b64_error(int code); /* a message for a nonzero result */

/* HTTP-date (httpdate.c): the three forms of RFC 9110 §5.6.7, checked strictly,
 * converted by curl_getdate. Returns 1 and the Unix time, or 0. */
int sg_http_date_parse(const char *s, size_t n, int64_t *unix_time);
#define SG_HTTP_DATE_END 253402300800LL /* 10000-01-01T00:00:00Z: beyond a 4-digit year */

/* Skew estimator (skew.c). The userdata block is the struct itself. */
#define SG_SKEW_MT "skewguard.skew"
typedef struct sg_skew sg_skew;
/* The interval [lo, hi] that contains skew = local_wall - server_wall at local wall
 * time `now_wall`, widened for the age of its samples by the drift bound.
 * Returns 0 (and leaves lo/hi alone) when the estimator has no samples yet. */
int sg_skew_interval(const sg_skew *est, double now_wall, double *lo, double *hi);

/* Response header parsing (http_curl.c), separate from libcurl so it can be fuzzed. */
#define SG_HEADER_NAME_MAX 128
int sg_header_line(const char *line, size_t n, char name[SG_HEADER_NAME_MAX], size_t *name_n,
                   const char **value, size_t *value_n);
void sg_push_headers(lua_State *L, const char *block, size_t n, int with_list);

/* Runtime failure convention: return nil, message, kind. */
int sg_fail(lua_State *L, const char *kind, const char *fmt, ...);

#endif
