/* Shared by the libFuzzer targets: an embedded Lua 5.4 state with skewguard.core
 * linked in statically (instrumented), lua/ on package.path, and a Lua driver
 * (fuzz/lua/<target>.lua) that returns function(input). The driver raises only
 * when an invariant breaks or the library raised where it must return nil, err:
 * both are findings, so the harness aborts and libFuzzer keeps the input. */
#ifndef SG_FUZZ_HARNESS_H
#define SG_FUZZ_HARNESS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#ifndef SG_ROOT
#define SG_ROOT "."
#endif

int luaopen_skewguard_core(lua_State *L);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The state lives for the whole run (the fuzzer's process): reachable, not leaked. */
static lua_State *sg_fuzz_state;

static void sg_fuzz_fatal(lua_State *L, const char *what) {
  fprintf(stderr, "fuzz harness: %s: %s\n", what, lua_tostring(L, -1));
  abort();
}

/* Loads fuzz/lua/<name>.lua; its result (the driver function) goes to the registry. */
static lua_State *sg_fuzz_lua(const char *name) {
  lua_State *L;
  char path[1024];
  if (sg_fuzz_state != NULL) return sg_fuzz_state;
  L = luaL_newstate();
  if (L == NULL) abort();
  luaL_openlibs(L);
  lua_getglobal(L, "package");
  lua_pushstring(L, SG_ROOT "/lua/?.lua;" SG_ROOT "/lua/?/init.lua;" SG_ROOT "/fuzz/lua/?.lua;"
                 "/usr/share/lua/5.4/?.lua;/usr/share/lua/5.4/?/init.lua");
  lua_setfield(L, -2, "path");
  lua_getfield(L, -1, "preload");
  lua_pushcfunction(L, luaopen_skewguard_core);
  lua_setfield(L, -2, "skewguard.core");
  lua_pop(L, 2);
  snprintf(path, sizeof path, SG_ROOT "/fuzz/lua/%s.lua", name);
  if (luaL_loadfile(L, path) != LUA_OK) sg_fuzz_fatal(L, "loading the driver");
  if (lua_pcall(L, 0, 1, 0) != LUA_OK) sg_fuzz_fatal(L, "running the driver");
  if (!lua_isfunction(L, -1)) {
    fprintf(stderr, "fuzz harness: %s must return a function\n", path);
    abort();
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "sg_fuzz_driver");
  sg_fuzz_state = L;
  return L;
}

static int sg_fuzz_traceback(lua_State *L) {
  luaL_traceback(L, L, lua_tostring(L, 1), 1);
  return 1;
}

/* Runs the driver on one input; aborts on any error it raises. */
static void sg_fuzz_run(const char *name, const uint8_t *data, size_t size) {
  lua_State *L = sg_fuzz_lua(name);
  int top = lua_gettop(L);
  lua_pushcfunction(L, sg_fuzz_traceback);
  lua_getfield(L, LUA_REGISTRYINDEX, "sg_fuzz_driver");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, top + 1) != LUA_OK) sg_fuzz_fatal(L, "driver raised");
  lua_settop(L, top);
}

/* A target whose logic is reachable only through the Lua C API. */
#define SG_FUZZ_LUA_TARGET(name)                                   \
  int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {   \
    sg_fuzz_run(name, data, size);                                 \
    return 0;                                                      \
  }

#endif
