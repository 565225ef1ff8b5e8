/* Compact JWT (RFC 7519 / 7515 §7.1) split and decode. Claims are decoded as
 * JSON in Lua (skewguard.jwt); here we only check the shape and base64url. The
 * token never appears in a message: it is a bearer secret. */
#include <string.h>
#include "sg.h"

/* A JOSE header or claims set is a JSON object; anything else is not a JWT. */
static int looks_like_object(const unsigned char *p, size_t n) {
  size_t i = 0;
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
  while (n > i && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r' || p[n - 1] == '\n')) n--;
  return n - i >= 2 && p[i] == '{' && p[n - 1] == '}';
}

static int l_jwt_payload(lua_State *L) {
  size_t n, seg[3][2], nseg = 0, start = 0, i, hlen, plen, slen;
  const char *token = luaL_checklstring(L, 1, &n);
  unsigned char *header, *payload, *sig;
  int rc;
  for (i = 0; i <= n; i++) {
    if (i == n || token[i] == '.') {
      if (nseg == 3) return sg_fail(L, "protocol", "not a compact JWS JWT: more than three segments");
      seg[nseg][0] = start;
      seg[nseg][1] = i - start;
      nseg++;
      start = i + 1;
    }
  }
  if (nseg != 3) return sg_fail(L, "protocol", "not a JWT: expected three dot-separated segments");
  if (seg[0][1] == 0 || seg[1][1] == 0)
    return sg_fail(L, "protocol", "not a JWT: empty header or payload segment");
  header = (unsigned char *)sg_newuserdata(L, SG_B64_DECODED_MAX(seg[0][1]));
  payload = (unsigned char *)sg_newuserdata(L, SG_B64_DECODED_MAX(seg[1][1]));
  sig = (unsigned char *)sg_newuserdata(L, SG_B64_DECODED_MAX(seg[2][1]));
  rc = sg_b64url_decode(token + seg[0][0], seg[0][1], header, &hlen);
  if (rc != SG_B64_OK) return sg_fail(L, "protocol", "JWT header: %s", sg_b64_error(rc));
  rc = sg_b64url_decode(token + seg[1][0], seg[1][1], payload, &plen);
  if (rc != SG_B64_OK) return sg_fail(L, "protocol", "JWT payload: %s", sg_b64_error(rc));
  /* The signature is not verified (we are not the audience), but it must be
   * well-formed or this is not a JWT; an empty one is an unsecured JWT. */
  rc = sg_b64url_decode(token + seg[2][0], seg[2][1], sig, &slen);
  if (rc != SG_B64_OK) return sg_fail(L, "protocol", "JWT signature: %s", sg_b64_error(rc));
  if (!looks_like_object(header, hlen))
    return sg_fail(L, "protocol", "not a JWT: header is not a JSON object");
  if (!looks_like_object(payload, plen))
    return sg_fail(L, "protocol", "not a JWT: payload is not a JSON object");
  lua_pushlstring(L, (const char *)payload, plen);
  lua_pushlstring(L, (const char *)header, hlen);
  sg_wipe(payload, plen);
  return 2;
}

void sg_open_jwt(lua_State *L) {
  static const luaL_Reg fns[] = {{"jwt_payload", l_jwt_payload}, {NULL, NULL}};
  sg_setfuncs(L, fns, 0);
}
