/* base64url (RFC 4648 §5) for Lua, on OpenSSL's codec. Decoding is strict: the
 * url alphabet only, optional '=' padding only when it completes a 4-character
 * group, and no stray bits in the last character (one encoding per value). */
#include <limits.h>
#include <string.h>
#include <openssl/evp.h>
#include "sg.h"

/* Value of a url-alphabet character, or -1. Not a table: no global data. */
static int b64url_value(unsigned char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

int sg_b64url_decode(const char *in, size_t n, unsigned char *out, size_t *outlen) {
  size_t pad = 0, len, i, full, tail, chunk = 0;
  unsigned char chunkbuf[256]; /* a multiple of 4 */
  int decoded;
  *outlen = 0;
  while (pad < n && in[n - 1 - pad] == '=') pad++;
  if (pad > 2 || (pad > 0 && n % 4 != 0)) return SG_B64_BADPAD;
  len = n - pad;
  for (i = 0; i < len; i++)
    if (b64url_value((unsigned char)in[i]) < 0) return SG_B64_BADCHAR;
  if (len % 4 == 1) return SG_B64_BADLEN;
  tail = len % 4;
  /* The bits below the last whole byte must be zero (RFC 4648 §3.5). */
  if (tail > 0) {
    int last = b64url_value((unsigned char)in[len - 1]);
    if ((tail == 2 && (last & 0x0f)) || (tail == 3 && (last & 0x03))) return SG_B64_BADBITS;
  }
  /* EVP_DecodeBlock wants the standard alphabet in whole, padded groups, and
   * returns 3 bytes per group even where they are padding; so translate in
   * chunks on the stack and count the real bytes ourselves. */
  full = len - tail;
  for (i = 0; i < len; i += chunk) {
    size_t j, take = len - i < sizeof chunkbuf ? len - i : sizeof chunkbuf;
    for (j = 0; j < take; j++) {
      unsigned char c = (unsigned char)in[i + j];
      chunkbuf[j] = c == '-' ? '+' : c == '_' ? '/' : c;
    }
    chunk = take;
    while (take % 4 != 0) chunkbuf[take++] = '=';
    decoded = EVP_DecodeBlock(out + *outlen, chunkbuf, (int)take);
    if (decoded < 0 || (size_t)decoded != take / 4 * 3) return SG_B64_BADCHAR;
    *outlen += i + chunk <= full ? (size_t)decoded : (size_t)decoded - 3 + (tail - 1);
  }
  sg_wipe(chunkbuf, sizeof chunkbuf);
  return SG_B64_OK;
}

const char *sg_b64_error(int code) {
  switch (code) {
    case SG_B64_BADCHAR: return "invalid base64url character";
    case SG_B64_BADLEN: return "invalid base64url length";
    case SG_B64_BADPAD: return "invalid base64url padding";
    case SG_B64_BADBITS: return "non-canonical base64url (stray bits in the last character)";
    default: return "ok";
  }
}

static int l_b64url_encode(lua_State *L) {
  size_t n;
  const char *in = luaL_checklstring(L, 1, &n);
  char *out;
  size_t len;
  luaL_argcheck(L, n <= (size_t)INT_MAX / 2, 1, "string too long");
  /* Scratch lives in a userdata so a raising push cannot leak it. */
  out = (char *)sg_newuserdata(L, 4 * ((n + 2) / 3) + 1);
  len = sg_b64url_encode((const unsigned char *)in, n, out);
  lua_pushlstring(L, out, len);
  return 1;
}

static int l_b64url_decode(lua_State *L) {
  size_t n, outlen;
  const char *in = luaL_checklstring(L, 1, &n);
  unsigned char *out = (unsigned char *)sg_newuserdata(L, SG_B64_DECODED_MAX(n));
  int rc = sg_b64url_decode(in, n, out, &outlen);
  if (rc != SG_B64_OK) return sg_fail(L, "protocol", "%s", sg_b64_error(rc));
  lua_pushlstring(L, (const char *)out, outlen);
  sg_wipe(out, SG_B64_DECODED_MAX(n)); /* decoded material may be a secret */
  return 1;
}

void sg_open_b64(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"b64url_encode", l_b64url_encode}, {"b64url_decode", l_b64url_decode}, {NULL, NULL}};
  sg_setfuncs(L, fns, 0);
}
