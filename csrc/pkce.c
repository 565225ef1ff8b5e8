/* PKCE (RFC 7636): code verifier from the CSPRNG and its S256 challenge. */
#include <string.h>
#include <openssl/sha.h>
#include "sg.h"

#define PKCE_MIN 43
#define PKCE_MAX 128

/* The unreserved characters of RFC 7636 §4.1, 66 of them. */
static const char pkce_alphabet[] =
  "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
#define PKCE_ALPHABET_LEN 66
/* Largest multiple of 66 not above 256: bytes at or above it are redrawn, so
 * every character is equally likely (a plain modulo would favour the first 58). */
#define PKCE_ACCEPT_BELOW (256 / PKCE_ALPHABET_LEN * PKCE_ALPHABET_LEN)

static int is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_' || c == '~';
}

static int l_pkce_verifier(lua_State *L) {
  lua_Integer len = luaL_optinteger(L, 1, 64);
  char verifier[PKCE_MAX];
  unsigned char pool[64];
  size_t have = 0, used = sizeof pool;
  luaL_argcheck(L, len >= PKCE_MIN && len <= PKCE_MAX, 1, "PKCE verifier length must be 43..128");
  while (have < (size_t)len) {
    if (used == sizeof pool) {
      if (!sg_random_bytes(pool, sizeof pool)) {
        sg_wipe(verifier, sizeof verifier);
        return sg_fail(L, "unavailable", "the CSPRNG failed (RAND_bytes)");
      }
      used = 0;
    }
    if (pool[used] < PKCE_ACCEPT_BELOW) verifier[have++] = pkce_alphabet[pool[used] % PKCE_ALPHABET_LEN];
    used++;
  }
  lua_pushlstring(L, verifier, (size_t)len);
  sg_wipe(verifier, sizeof verifier);
  sg_wipe(pool, sizeof pool);
  return 1;
}

static int l_pkce_challenge(lua_State *L) {
  size_t n, i;
  const char *verifier = luaL_checklstring(L, 1, &n);
  unsigned char md[SHA256_DIGEST_LENGTH];
  char out[4 * ((SHA256_DIGEST_LENGTH + 2) / 3) + 1];
  size_t len;
  luaL_argcheck(L, n >= PKCE_MIN && n <= PKCE_MAX, 1, "PKCE verifier length must be 43..128");
  for (i = 0; i < n; i++)
    luaL_argcheck(L, is_unreserved((unsigned char)verifier[i]), 1,
                  "PKCE verifier characters must be [A-Za-z0-9-._~]");
  SHA256((const unsigned char *)verifier, n, md);
  len = sg_b64url_encode(md, sizeof md, out);
  lua_pushlstring(L, out, len);
  return 1;
}

void sg_open_pkce(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"pkce_verifier", l_pkce_verifier}, {"pkce_challenge", l_pkce_challenge}, {NULL, NULL}};
  sg_setfuncs(L, fns, 0);
}
