/* luaopen_skewguard_core: one table holding every C part of skewguard. */
#include "sg.h"

#ifndef SG_VERSION
#define SG_VERSION "scm"
#endif

SG_EXPORT int luaopen_skewguard_core(lua_State *L);

SG_EXPORT int luaopen_skewguard_core(lua_State *L) {
  lua_newtable(L);
  sg_open_clock(L);
  sg_open_secret(L);
  sg_open_b64(L);
  sg_open_jwt(L);
  sg_open_httpdate(L);
  sg_open_pkce(L);
  sg_open_skew(L);
  sg_open_sntp(L);
  sg_open_token(L);
  sg_open_http(L);
  sg_open_redis(L);
  sg_open_seal(L);
  sg_open_x509(L);
  lua_pushliteral(L, SG_VERSION);
  lua_setfield(L, -2, "version");
  lua_pushliteral(L, LUA_VERSION);
  lua_setfield(L, -2, "lua_version");
  return 1;
}
