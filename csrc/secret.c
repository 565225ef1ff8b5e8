/* Secret handling shared by the core: wiping, fingerprints, randomness, base64. */
#include <string.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include "sg.h"

void sg_wipe(void *p, size_t n) {
  if (p != NULL && n > 0) OPENSSL_cleanse(p, n);
}

void sg_fingerprint(const void *secret, size_t n, char out[SG_FINGERPRINT_LEN + 1]) {
  static const char hex[] = "0123456789abcdef";
  unsigned char md[SHA256_DIGEST_LENGTH];
  size_t i;
  SHA256((const unsigned char *)secret, n, md);
  for (i = 0; i < SG_FINGERPRINT_LEN / 2; i++) {
    out[2 * i] = hex[md[i] >> 4];
    out[2 * i + 1] = hex[md[i] & 15];
  }
  out[SG_FINGERPRINT_LEN] = '\0';
  sg_wipe(md, sizeof md);
}

int sg_random_bytes(unsigned char *buf, size_t n) {
  return n <= (size_t)0x7fffffff && RAND_bytes(buf, (int)n) == 1;
}

size_t sg_b64_encode(const unsigned char *in, size_t n, char *out) {
  return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

size_t sg_b64url_encode(const unsigned char *in, size_t n, char *out) {
  size_t len = sg_b64_encode(in, n, out), i;
  while (len > 0 && out[len - 1] == '=') len--;
  for (i = 0; i < len; i++) {
    if (out[i] == '+') out[i] = '-';
    else if (out[i] == '/') out[i] = '_';
  }
  out[len] = '\0';
  return len;
}

static int l_fingerprint(lua_State *L) {
  size_t n;
  const char *secret = luaL_checklstring(L, 1, &n);
  char out[SG_FINGERPRINT_LEN + 1];
  sg_fingerprint(secret, n, out);
  lua_pushlstring(L, out, SG_FINGERPRINT_LEN);
  return 1;
}

static void push_hex(lua_State *L, const unsigned char *bytes, size_t n) {
  static const char hex[] = "0123456789abcdef";
  char out[2 * 64];
  size_t i;
  for (i = 0; i < n; i++) {
    out[2 * i] = hex[bytes[i] >> 4];
    out[2 * i + 1] = hex[bytes[i] & 15];
  }
  lua_pushlstring(L, out, 2 * n);
}

/* Store keys are derived from the credential's public part (token URL, client id). */
static int l_sha256_hex(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  unsigned char md[SHA256_DIGEST_LENGTH];
  SHA256((const unsigned char *)s, n, md);
  push_hex(L, md, sizeof md);
  return 1;
}

/* Record ids and lock owners: unguessable, so a stale writer cannot collide. */
static int l_random_hex(lua_State *L) {
  lua_Integer n = luaL_optinteger(L, 1, 16);
  unsigned char buf[64];
  luaL_argcheck(L, n >= 1 && n <= (lua_Integer)sizeof buf, 1, "between 1 and 64 bytes");
  if (!sg_random_bytes(buf, (size_t)n)) return luaL_error(L, "skewguard: the CSPRNG failed");
  push_hex(L, buf, (size_t)n);
  return 1;
}

void sg_open_secret(lua_State *L) {
  static const luaL_Reg fns[] = {{"fingerprint", l_fingerprint}, {"sha256_hex", l_sha256_hex},
                                 {"random_hex", l_random_hex}, {NULL, NULL}};
  sg_setfuncs(L, fns, 0);
}
