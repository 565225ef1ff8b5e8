/* Clocks: every deadline uses the monotonic clock; the wall clock only converts. */
#define _POSIX_C_SOURCE 200809L
#include <time.h>
#include "sg.h"

static double ts_seconds(const struct timespec *ts) {
  return (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9;
}

double sg_monotonic(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts_seconds(&ts);
}

double sg_wall(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ts_seconds(&ts);
}

static int l_monotonic(lua_State *L) {
  lua_pushnumber(L, sg_monotonic());
  return 1;
}

static int l_wall(lua_State *L) {
  lua_pushnumber(L, sg_wall());
  return 1;
}

/* Both clocks read back to back, so callers can anchor one on the other. */
static int l_now(lua_State *L) {
  lua_pushnumber(L, sg_monotonic());
  lua_pushnumber(L, sg_wall());
  return 2;
}

void sg_open_clock(lua_State *L) {
  static const luaL_Reg fns[] = {
    {"monotonic", l_monotonic}, {"wall", l_wall}, {"now", l_now}, {NULL, NULL}};
  sg_setfuncs(L, fns, 0);
}
