#include <stdarg.h>
#include <stdio.h>
#include "sg.h"

void sg_newclass(lua_State *L, const char *tname, const luaL_Reg *methods,
                 const luaL_Reg *meta) {
  luaL_newmetatable(L, tname);
  sg_setfuncs(L, meta, 0);
  lua_pushstring(L, tname);
  lua_setfield(L, -2, "__name"); /* 5.1/LuaJIT do not set it */
  lua_newtable(L);
  sg_setfuncs(L, methods, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

int sg_fail(lua_State *L, const char *kind, const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  (void)vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  lua_pushnil(L);
  lua_pushstring(L, buf);
  lua_pushstring(L, kind);
  return 3;
}
