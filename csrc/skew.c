/* The skew estimator (DESIGN.md §2): skew = local_wall - server_wall as an
 * interval that certainly contains it.
 *
 * Every sample is an interval [lo, hi] for the skew at local wall time `at`.
 * Clocks drift, so a sample of age a only says skew is in [lo - d*a, hi + d*a]
 * (d = drift bound). The estimate is the intersection of the active samples so
 * widened. A sample that does not meet the estimate means a clock stepped: the
 * estimator keeps the newest samples that are mutually consistent and forgets
 * the rest, instead of averaging across the step. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include "sg.h"

#define SKEW_CAPACITY 256        /* largest max_samples */
#define SKEW_MAX_SOURCES 8       /* distinct source names per estimator */
#define SKEW_SOURCE_LEN 16       /* including the NUL */

struct skew_sample {
  double lo, hi; /* bounds of the skew, seconds */
  double at;     /* local wall time the bounds hold at */
  int source;    /* index into sources */
};

struct sg_skew {
  double drift;   /* seconds of skew change per second, e.g. 50e-6 */
  double max_rtt; /* Date samples with a longer round trip are dropped */
  double stamp_lag; /* how far a server's Date may lag its clock (a cached time) */
  int capacity;   /* max_samples */
  int count;      /* active samples: the newest `count` of the ring */
  int newest;     /* ring index of the newest sample */
  int closed;
  int nsources;
  unsigned long steps;    /* restarts after a non-intersecting sample */
  unsigned long observed; /* samples accepted since creation or reset */
  char sources[SKEW_MAX_SOURCES][SKEW_SOURCE_LEN];
  struct skew_sample ring[SKEW_CAPACITY];
};

static const struct skew_sample *sample_at(const sg_skew *est, int back) {
  return &est->ring[(est->newest - back + est->capacity) % est->capacity];
}

int sg_skew_interval(const sg_skew *est, double now_wall, double *lo, double *hi) {
  double latest, at, a = -HUGE_VAL, b = HUGE_VAL;
  int i;
  if (est->closed || est->count == 0) return 0;
  latest = sample_at(est, 0)->at;
  for (i = 1; i < est->count; i++)
    if (sample_at(est, i)->at > latest) latest = sample_at(est, i)->at;
  /* Asked about a time before the newest sample (explicit times, or the wall
   * clock went back): evaluate at the newest sample, where the samples are known
   * to agree, and widen back to `now_wall` from there. */
  at = now_wall > latest ? now_wall : latest;
  for (i = 0; i < est->count; i++) {
    const struct skew_sample *s = sample_at(est, i);
    double widen = est->drift * fabs(at - s->at);
    if (s->lo - widen > a) a = s->lo - widen;
    if (s->hi + widen < b) b = s->hi + widen;
  }
  *lo = a - est->drift * (at - now_wall);
  *hi = b + est->drift * (at - now_wall);
  return 1;
}

static sg_skew *check_skew(lua_State *L) {
  sg_skew *est = (sg_skew *)luaL_checkudata(L, 1, SG_SKEW_MT);
  if (est->closed) luaL_error(L, "skewguard.skew: the estimator is closed");
  return est;
}

static double check_finite(lua_State *L, int arg) {
  double v = (double)luaL_checknumber(L, arg);
  if (!isfinite(v)) luaL_argerror(L, arg, "finite number expected");
  return v;
}

/* Local wall time: an explicit argument, else the injected clock, else the system's. */
static double now_arg(lua_State *L, int arg) {
  double now;
  if (!lua_isnoneornil(L, arg)) return check_finite(L, arg);
  sg_getuservalue(L, 1);
  lua_rawgeti(L, -1, 1);
  if (lua_isnil(L, -1)) {
    lua_pop(L, 2);
    return sg_wall();
  }
  lua_call(L, 0, 1);
  if (lua_type(L, -1) != LUA_TNUMBER || !isfinite((double)lua_tonumber(L, -1)))
    luaL_error(L, "skewguard.skew: the wall clock function must return a finite number");
  now = (double)lua_tonumber(L, -1);
  lua_pop(L, 2);
  return now;
}

static int intern_source(lua_State *L, sg_skew *est, int arg, const char *default_name) {
  size_t n;
  const char *name = luaL_optlstring(L, arg, default_name, &n);
  int i;
  luaL_argcheck(L, n > 0 && n < SKEW_SOURCE_LEN, arg, "source name must be 1..15 characters");
  for (i = 0; i < est->nsources; i++)
    if (strcmp(est->sources[i], name) == 0) return i;
  luaL_argcheck(L, est->nsources < SKEW_MAX_SOURCES, arg, "too many distinct sources (8 at most)");
  memcpy(est->sources[est->nsources], name, n + 1);
  return est->nsources++;
}

/* Two samples agree when their intervals meet once each is widened by the drift
 * over the time between them. The active samples agree pairwise, which (Helly,
 * in one dimension) keeps their intersection non-empty at any time at or after
 * the newest of them, however the samples' own times are ordered. Checking a new
 * sample against the estimate evaluated at one instant is not enough when the
 * wall clock went back: the estimate is then evaluated at the newest sample's
 * time, where an older, now distant sample is wider than at the new one's. */
static int samples_agree(const sg_skew *est, const struct skew_sample *s, double lo, double hi,
                         double at) {
  double widen = est->drift * fabs(at - s->at);
  return lo <= s->hi + widen && s->lo <= hi + widen;
}

/* Add a sample; returns 1 when it revealed a clock step. */
static int add_sample(sg_skew *est, double lo, double hi, double at, int source) {
  double acc_lo = lo, acc_hi = hi;
  int stepped = 0, kept, i;
  struct skew_sample *s;
  for (i = 0; i < est->count && !stepped; i++)
    if (!samples_agree(est, sample_at(est, i), lo, hi, at)) stepped = 1;
  est->newest = (est->newest + 1) % est->capacity;
  s = &est->ring[est->newest];
  s->lo = lo;
  s->hi = hi;
  s->at = at;
  s->source = source;
  if (est->count < est->capacity) est->count++;
  est->observed++;
  if (!stepped) return 0;
  /* Walk back from the new sample while the intersection stays non-empty:
   * those samples are consistent with the present; older ones predate the step. */
  for (kept = 1; kept < est->count; kept++) {
    const struct skew_sample *old = sample_at(est, kept);
    double widen = est->drift * fabs(at - old->at);
    double next_lo = old->lo - widen > acc_lo ? old->lo - widen : acc_lo;
    double next_hi = old->hi + widen < acc_hi ? old->hi + widen : acc_hi;
    if (next_lo > next_hi) break;
    acc_lo = next_lo;
    acc_hi = next_hi;
  }
  est->count = kept; /* the rest fall outside the active window */
  est->steps++;
  return 1;
}

static int l_observe_interval(lua_State *L) {
  sg_skew *est = check_skew(L);
  double lo = check_finite(L, 2), hi = check_finite(L, 3);
  int source, stepped;
  double at;
  luaL_argcheck(L, lo <= hi, 3, "interval with hi < lo");
  source = intern_source(L, est, 4, "interval");
  at = now_arg(L, 5);
  stepped = add_sample(est, lo, hi, at, source);
  lua_pushboolean(L, 1);
  lua_pushboolean(L, stepped);
  return 2;
}

/* A response's Date header D (1 s resolution, floor of the server's clock) was
 * stamped at some instant between sending (t_send) and receiving (t_recv), when
 * the server's clock read somewhere in [D, D + 1): skew is in
 * [t_send - (D + 1), t_recv - D]. */
static int l_observe_date(lua_State *L) {
  sg_skew *est = check_skew(L);
  size_t n;
  const char *header = luaL_checklstring(L, 2, &n);
  double t_send = check_finite(L, 3), t_recv = check_finite(L, 4), rtt = t_recv - t_send, drift;
  int64_t date;
  int stepped;
  luaL_argcheck(L, t_recv >= t_send, 4, "t_recv before t_send");
  if (rtt > est->max_rtt)
    return sg_fail(L, "bogus", "Date sample dropped: round trip %.3f s is longer than max_rtt %.3f s",
                   rtt, est->max_rtt);
  if (!sg_http_date_parse(header, n, &date))
    return sg_fail(L, "protocol", "Date sample dropped: the header is not an HTTP-date");
  /* The skew may drift during the round trip; the sample holds at t_recv. A
   * server that cuts Date from a cached clock stamps a time up to stamp_lag old:
   * its second D then only says server time < D + 1 + stamp_lag, which lowers
   * the bound on the skew by stamp_lag (the upper bound is unaffected). */
  drift = est->drift * rtt;
  stepped = add_sample(est, t_send - ((double)date + 1) - est->stamp_lag - drift, t_recv - (double)date + drift,
                       t_recv, intern_source(L, est, 5, "date"));
  lua_pushboolean(L, 1);
  lua_pushboolean(L, stepped);
  return 2;
}

static int l_bounds(lua_State *L) {
  sg_skew *est = check_skew(L);
  double lo, hi;
  if (!sg_skew_interval(est, now_arg(L, 2), &lo, &hi)) {
    lua_pushnil(L);
    return 1;
  }
  lua_pushnumber(L, lo);
  lua_pushnumber(L, hi);
  return 2;
}

static int l_skew(lua_State *L) {
  sg_skew *est = check_skew(L);
  double lo, hi;
  if (!sg_skew_interval(est, now_arg(L, 2), &lo, &hi)) lua_pushnil(L);
  else lua_pushnumber(L, lo + (hi - lo) / 2);
  return 1;
}

static int l_uncertainty(lua_State *L) {
  sg_skew *est = check_skew(L);
  double lo, hi;
  if (!sg_skew_interval(est, now_arg(L, 2), &lo, &hi)) lua_pushnil(L);
  else lua_pushnumber(L, (hi - lo) / 2);
  return 1;
}

enum which_end { END_MID, END_EARLY, END_LATE };
static const char *const end_names[] = {"mid", "early", "late", NULL};

/* server = local - skew, local = server + skew, with skew in [lo, hi]:
 *   to_local(S):  local instant in [S + lo, S + hi]; "early" = S + lo.
 *   to_server(L): server instant in [L - hi, L - lo]; "early" = L - hi.
 * "early" is the conservative end for a deadline (a server-time expiry must be
 * treated as reached at the earliest local instant it can be); "late" is the
 * conservative end for a start (nbf, an HTTP-date Retry-After: do not act before
 * the latest local instant it can be). */
static int convert(lua_State *L, const sg_skew *est, double ts, int which, double now,
                   int to_local) {
  double lo, hi, skew;
  if (!sg_skew_interval(est, now, &lo, &hi)) {
    lua_pushnil(L);
    return 1;
  }
  if (which == END_MID) skew = lo + (hi - lo) / 2;
  else if ((which == END_EARLY) == (to_local != 0)) skew = lo;
  else skew = hi;
  lua_pushnumber(L, to_local ? ts + skew : ts - skew);
  return 1;
}

/* to_local(server_ts[, which[, now]]) */
static int l_to_local(lua_State *L) {
  sg_skew *est = check_skew(L);
  double ts = check_finite(L, 2);
  int which = luaL_checkoption(L, 3, "mid", end_names);
  return convert(L, est, ts, which, now_arg(L, 4), 1);
}

/* to_server(local_ts[, which[, now]]) */
static int l_to_server(lua_State *L) {
  sg_skew *est = check_skew(L);
  double ts = check_finite(L, 2);
  int which = luaL_checkoption(L, 3, "mid", end_names);
  return convert(L, est, ts, which, now_arg(L, 4), 0);
}

/* The server's clock now: server_now([which[, now]]). */
static int l_server_now(lua_State *L) {
  sg_skew *est = check_skew(L);
  int which = luaL_checkoption(L, 2, "mid", end_names);
  double now = now_arg(L, 3);
  return convert(L, est, now, which, now, 0);
}

static int l_samples(lua_State *L) {
  sg_skew *est = check_skew(L);
  lua_pushinteger(L, est->count);
  return 1;
}

static int l_steps(lua_State *L) {
  sg_skew *est = check_skew(L);
  lua_pushnumber(L, (lua_Number)est->steps);
  return 1;
}

/* Source names of the active samples, in the order they were first seen. */
static int l_sources(lua_State *L) {
  sg_skew *est = check_skew(L);
  int used[SKEW_MAX_SOURCES] = {0}, i, n = 0;
  for (i = 0; i < est->count; i++) used[sample_at(est, i)->source] = 1;
  lua_newtable(L);
  for (i = 0; i < est->nsources; i++) {
    if (!used[i]) continue;
    lua_pushstring(L, est->sources[i]);
    lua_rawseti(L, -2, ++n);
  }
  return 1;
}

static int l_reset(lua_State *L) {
  sg_skew *est = check_skew(L);
  est->count = 0;
  est->newest = 0;
  est->observed = 0;
  est->steps = 0;
  return 0;
}

/* Nothing is owned outside the block; closing drops the clock function and
 * makes further use an error. Idempotent, shared by close, __close and __gc. */
static int l_close(lua_State *L) {
  sg_skew *est = (sg_skew *)luaL_checkudata(L, 1, SG_SKEW_MT);
  if (!est->closed) {
    est->closed = 1;
    est->count = 0;
    lua_newtable(L);
    sg_setuservalue(L, 1);
  }
  return 0;
}

static int l_tostring(lua_State *L) {
  sg_skew *est = (sg_skew *)luaL_checkudata(L, 1, SG_SKEW_MT);
  double lo, hi;
  if (est->closed) lua_pushfstring(L, "%s{closed}: %p", SG_SKEW_MT, (void *)est);
  else if (!sg_skew_interval(est, now_arg(L, 2), &lo, &hi))
    lua_pushfstring(L, "%s{no samples}: %p", SG_SKEW_MT, (void *)est);
  else {
    char buf[96];
    (void)snprintf(buf, sizeof buf, "skew=%+.6f s +/- %.6f s, %d samples", lo + (hi - lo) / 2,
             (hi - lo) / 2, est->count);
    lua_pushfstring(L, "%s{%s}: %p", SG_SKEW_MT, buf, (void *)est);
  }
  return 1;
}

/* skew_new(drift_ppm, max_samples, max_rtt[, wall]) — skewguard.skew.new checks options. */
static int l_skew_new(lua_State *L) {
  double drift_ppm = check_finite(L, 1), max_rtt = check_finite(L, 3);
  lua_Integer max_samples = luaL_checkinteger(L, 2);
  int has_wall = !lua_isnoneornil(L, 4);
  sg_skew *est;
  luaL_argcheck(L, drift_ppm >= 0 && drift_ppm <= 1e4, 1, "drift_ppm must be 0..10000");
  luaL_argcheck(L, max_samples >= 1 && max_samples <= SKEW_CAPACITY, 2,
                "max_samples must be 1..256");
  double stamp_lag = luaL_optnumber(L, 5, 0);
  luaL_argcheck(L, max_rtt > 0, 3, "max_rtt must be positive");
  luaL_argcheck(L, stamp_lag >= 0 && stamp_lag <= 1, 5, "stamp_lag must be 0..1 s");
  if (has_wall) luaL_checktype(L, 4, LUA_TFUNCTION);
  /* With three arguments the userdata lands at index 4: decide on the wall
   * clock before pushing it, or the estimator becomes its own clock. */
  est = (sg_skew *)sg_newuserdata_uv(L, sizeof *est);
  memset(est, 0, sizeof *est);
  est->drift = drift_ppm * 1e-6;
  est->max_rtt = max_rtt;
  est->stamp_lag = stamp_lag;
  est->capacity = (int)max_samples;
  luaL_getmetatable(L, SG_SKEW_MT);
  lua_setmetatable(L, -2);
  lua_newtable(L);
  if (has_wall) {
    lua_pushvalue(L, 4);
    lua_rawseti(L, -2, 1);
  }
  sg_setuservalue(L, -2);
  return 1;
}

void sg_open_skew(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"observe_date", l_observe_date}, {"observe_interval", l_observe_interval},
    {"skew", l_skew}, {"bounds", l_bounds}, {"uncertainty", l_uncertainty},
    {"server_now", l_server_now}, {"to_local", l_to_local}, {"to_server", l_to_server},
    {"samples", l_samples}, {"steps", l_steps}, {"sources", l_sources}, {"reset", l_reset},
    {"close", l_close}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg fns[] = {{"skew_new", l_skew_new}, {NULL, NULL}};
  sg_newclass(L, SG_SKEW_MT, methods, meta);
  sg_setfuncs(L, fns, 0);
}
