/* All Lua-version differences live here and nowhere else (Lua 5.1/LuaJIT .. 5.4). */
#ifndef SG_COMPAT_H
#define SG_COMPAT_H

#include <lua.h>
#include <lauxlib.h>

#if LUA_VERSION_NUM < 502
/* Lua 5.1 / LuaJIT */
#ifndef LUA_OK
#define LUA_OK 0
#endif
#define sg_rawlen(L, i) lua_objlen((L), (i))
#define sg_newuserdata(L, sz) lua_newuserdata((L), (sz))
/* luaL_setfuncs with upvalues, as 5.2+ has it. */
static inline void sg_setfuncs(lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}
static inline void *sg_testudata(lua_State *L, int ud, const char *tname) {
  void *p = lua_touserdata(L, ud);
  if (p != NULL && lua_getmetatable(L, ud)) {
    luaL_getmetatable(L, tname);
    if (!lua_rawequal(L, -1, -2)) p = NULL;
    lua_pop(L, 2);
    return p;
  }
  return NULL;
}
#define sg_isinteger(L, i) 0
#else
#define sg_rawlen(L, i) lua_rawlen((L), (i))
#define sg_setfuncs(L, l, nup) luaL_setfuncs((L), (l), (nup))
#define sg_testudata(L, ud, tname) luaL_testudata((L), (ud), (tname))
#if LUA_VERSION_NUM >= 504
#define sg_newuserdata(L, sz) lua_newuserdatauv((L), (sz), 0)
#else
#define sg_newuserdata(L, sz) lua_newuserdata((L), (sz))
#endif
#if LUA_VERSION_NUM >= 503
#define sg_isinteger(L, i) lua_isinteger((L), (i))
#else
#define sg_isinteger(L, i) 0
#endif
#endif

/* One Lua value attached to a userdata (5.4 user value, 5.2/5.3 uservalue,
 * 5.1 environment table). It is always a table here, which all versions accept:
 * sg_setuservalue pops a table into the userdata at `idx`; sg_getuservalue
 * pushes it. Create the userdata with sg_newuserdata_uv. */
#if LUA_VERSION_NUM >= 504
#define sg_newuserdata_uv(L, sz) lua_newuserdatauv((L), (sz), 1)
#define sg_setuservalue(L, idx) ((void)lua_setiuservalue((L), (idx), 1))
#define sg_getuservalue(L, idx) ((void)lua_getiuservalue((L), (idx), 1))
#elif LUA_VERSION_NUM >= 502
#define sg_newuserdata_uv(L, sz) lua_newuserdata((L), (sz))
#define sg_setuservalue(L, idx) lua_setuservalue((L), (idx))
#define sg_getuservalue(L, idx) ((void)lua_getuservalue((L), (idx)))
#else
#define sg_newuserdata_uv(L, sz) lua_newuserdata((L), (sz))
#define sg_setuservalue(L, idx) ((void)lua_setfenv((L), (idx)))
#define sg_getuservalue(L, idx) lua_getfenv((L), (idx))
#endif

/* Push an integer that may exceed the range of lua_Integer on 5.1 (a double there). */
#if LUA_VERSION_NUM >= 503
#define sg_pushint64(L, v) lua_pushinteger((L), (lua_Integer)(v))
#else
#define sg_pushint64(L, v) lua_pushnumber((L), (lua_Number)(v))
#endif

#endif
