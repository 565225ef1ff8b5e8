/* The floor for the hot-path benchmark: the least a "cached token" lookup can
 * cost when called as a Lua method. get() reads the monotonic clock, compares
 * it with a deadline and returns a cached string; nothing else. Built by
 * bench/run.sh into build/bench/<lua>/floor.so; not part of skewguard.
 *
 *   local floor = require "floor"
 *   local f = floor.new(str, seconds)   -- str cached, valid for `seconds`
 *   f:get()         -> str | nil        (CLOCK_MONOTONIC)
 *   f:get_coarse()  -> str | nil        (CLOCK_MONOTONIC_COARSE, for reference) */
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#include <lua.h>
#include <lauxlib.h>

typedef struct {
  double deadline;
  int ref; /* registry reference to the cached string */
} floor_token;

static double clock_seconds(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cached(lua_State *L, clockid_t id) {
  const floor_token *f = (const floor_token *)lua_touserdata(L, 1);
  if (clock_seconds(id) < f->deadline) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, f->ref);
    return 1;
  }
  lua_pushnil(L);
  return 1;
}

static int l_get(lua_State *L) { return cached(L, CLOCK_MONOTONIC); }
static int l_get_coarse(lua_State *L) { return cached(L, CLOCK_MONOTONIC_COARSE); }

static int l_gc(lua_State *L) {
  floor_token *f = (floor_token *)luaL_checkudata(L, 1, "bench.floor");
  luaL_unref(L, LUA_REGISTRYINDEX, f->ref);
  f->ref = LUA_NOREF;
  return 0;
}

static int l_new(lua_State *L) {
  floor_token *f;
  luaL_checkstring(L, 1);
  f = (floor_token *)lua_newuserdata(L, sizeof *f);
  f->deadline = clock_seconds(CLOCK_MONOTONIC) + luaL_checknumber(L, 2);
  lua_pushvalue(L, 1);
  f->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (luaL_newmetatable(L, "bench.floor")) {
    lua_newtable(L);
    lua_pushcfunction(L, l_get);
    lua_setfield(L, -2, "get");
    lua_pushcfunction(L, l_get_coarse);
    lua_setfield(L, -2, "get_coarse");
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  return 1;
}

int luaopen_floor(lua_State *L);
int luaopen_floor(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_new);
  lua_setfield(L, -2, "new");
  return 1;
}
