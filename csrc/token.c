/* The token userdata: credential and token material in C memory (wiped when
 * replaced or collected), deadlines on the monotonic clock, refresh windows,
 * single-flight marker, and request builders for the OAuth grants. No I/O. */
#define _POSIX_C_SOURCE 200809L /* clock_gettime, CLOCK_MONOTONIC_COARSE */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "sg.h"

#define SG_TOKEN_MT "skewguard.token"

/* expires_in beyond this is not a lifetime but a bug or an attack. */
#define MAX_EXPIRES_IN (10.0 * 365.25 * 86400.0)
/* Opaque tokens can be long (JWTs with many claims), but not this long. */
#define MAX_TOKEN_LEN ((size_t)1 << 20)

typedef struct {
  char *p;
  size_t n;
} secret_buf;

typedef struct {
  secret_buf client_id, client_secret;
  secret_buf access, refresh;
  char token_type[16];
  int has_token;
  double issued;      /* monotonic SEND time of the request that got the token */
  double deadline;    /* monotonic instant the token must be considered expired */
  double valid_from;  /* monotonic instant it becomes usable (nbf), -inf if none */
  double lifetime;    /* deadline - issued */
  double mandatory;   /* seconds before deadline: every caller waits for renewal */
  double advisory;    /* seconds before deadline: one caller renews, others go on */
  double fresh_window; /* max(0, mandatory, advisory): fresh while more is left */
  double exp_server, nbf_server; /* as given (server wall time), NaN if absent */
  double buffer, jitter, advisory_cap, advisory_fraction, stale_refresh;
  uint64_t generation;
  int refreshing;
  double refresh_started;
  int estimator_ref; /* registry reference to an attached skew estimator */
  /* Registry reference to the access token as a Lua string while it is current,
   * so the fresh-token fast path returns it without a copy. Lua cannot wipe it;
   * the reference is dropped when the token is replaced, invalidated or closed. */
  int access_ref;
  char fingerprint[SG_FINGERPRINT_LEN + 1]; /* of the current access token */
  double coarse_margin; /* two ticks of the coarse monotonic clock, seconds */
  /* The caller's clock at accept() was this process's monotonic clock (not an
   * injected or virtual one): only then may the fast path read the clock itself. */
  int on_monotonic;
  int closed;
} sg_token;

/* ---- secret buffers ---------------------------------------------------- */

static void secret_clear(secret_buf *s) {
  if (s->p != NULL) {
    sg_wipe(s->p, s->n);
    free(s->p);
  }
  s->p = NULL;
  s->n = 0;
}

static void secret_set(lua_State *L, secret_buf *s, const char *v, size_t n) {
  char *p = malloc(n + 1);
  if (p == NULL) {
    luaL_error(L, "skewguard.token: out of memory");
    return; /* not reached: luaL_error does not return */
  }
  memcpy(p, v, n);
  p[n] = '\0';
  secret_clear(s);
  s->p = p;
  s->n = n;
}

/* A growable byte buffer for request material; wiped when freed. */
typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} wbuf;

static void wbuf_free(wbuf *b) {
  if (b->p != NULL) {
    sg_wipe(b->p, b->cap);
    free(b->p);
  }
  b->p = NULL;
  b->n = b->cap = 0;
}

static void wbuf_add(wbuf *b, const char *s, size_t n) {
  if (b->oom) return;
  /* Sizes near SIZE_MAX would wrap the sums below: treat them as out of memory. */
  if (n > SIZE_MAX / 4 - b->n) {
    b->oom = 1;
    return;
  }
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 128;
    char *p;
    while (cap < b->n + n + 1) cap *= 2;
    p = malloc(cap);
    if (p == NULL) {
      b->oom = 1;
      return;
    }
    if (b->p != NULL) {
      memcpy(p, b->p, b->n);
      sg_wipe(b->p, b->cap);
      free(b->p);
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
}

static void wbuf_adds(wbuf *b, const char *s) { wbuf_add(b, s, strlen(s)); }

/* RFC 3986 unreserved characters pass; everything else is %XX. In a form body
 * (application/x-www-form-urlencoded, RFC 6749 appendix B) a space is '+'. */
static void wbuf_add_encoded(wbuf *b, const char *s, size_t n, int form) {
  static const char hex[] = "0123456789ABCDEF";
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
        c == '-' || c == '.' || c == '_' || c == '~') {
      wbuf_add(b, (const char *)&s[i], 1);
    } else if (c == ' ' && form) {
      wbuf_add(b, "+", 1);
    } else {
      char e[3];
      e[0] = '%';
      e[1] = hex[c >> 4];
      e[2] = hex[c & 15];
      wbuf_add(b, e, 3);
    }
  }
}

/* Appends "&name=value" (or "name=value" at the start) to a form or query. */
static void wbuf_param(wbuf *b, const char *name, const char *v, size_t n, int form) {
  if (b->n > 0 && b->p[b->n - 1] != '?' && b->p[b->n - 1] != '&') wbuf_add(b, "&", 1);
  wbuf_adds(b, name);
  wbuf_add(b, "=", 1);
  wbuf_add_encoded(b, v, n, form);
}

static void wbuf_push(lua_State *L, wbuf *b) {
  if (b->oom) {
    wbuf_free(b);
    luaL_error(L, "skewguard.token: out of memory");
  }
  lua_pushlstring(L, b->p != NULL ? b->p : "", b->n);
  wbuf_free(b);
}

/* ---- helpers ------------------------------------------------------------- */

static sg_token *check_token(lua_State *L) {
  sg_token *t = (sg_token *)luaL_checkudata(L, 1, SG_TOKEN_MT);
  if (t->closed) luaL_error(L, "skewguard.token: used after close()");
  return t;
}

static double opt_number_field(lua_State *L, int idx, const char *k, double dflt) {
  double v = dflt;
  if (lua_isnoneornil(L, idx)) return dflt;
  lua_getfield(L, idx, k);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER)
      luaL_error(L, "skewguard.token: option '%s' must be a number", k);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* A string field; NULL when absent. Raises when present with another type. */
static const char *opt_string_field(lua_State *L, int idx, const char *k, size_t *n) {
  const char *s = NULL;
  lua_getfield(L, idx, k);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "skewguard.token: field '%s' must be a string", k);
    s = lua_tolstring(L, -1, n);
  }
  lua_pop(L, 1); /* the string stays alive: the table at idx holds it */
  return s;
}

static const char *req_string_field(lua_State *L, int idx, const char *k, size_t *n) {
  const char *s = opt_string_field(L, idx, k, n);
  if (s == NULL || *n == 0) luaL_error(L, "skewguard.token: field '%s' is required", k);
  return s;
}

/* Token material goes into an HTTP header: no controls, no spaces. */
static int header_safe(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 0x20 || c == 0x7f) return 0;
  }
  return 1;
}

static int is_bearer(const char *s, size_t n) {
  static const char bearer[] = "bearer";
  size_t i;
  if (n != 6) return 0;
  for (i = 0; i < n; i++)
    if ((s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]) != bearer[i]) return 0;
  return 1;
}

static double uniform01(void) {
  unsigned char r[4];
  uint32_t u;
  if (!sg_random_bytes(r, sizeof r)) return 0.5;
  u = ((uint32_t)r[0] << 24) | ((uint32_t)r[1] << 16) | ((uint32_t)r[2] << 8) | r[3];
  return (double)u / 4294967296.0;
}

static double now_arg(lua_State *L, int idx) {
  return lua_isnoneornil(L, idx) ? sg_monotonic() : luaL_checknumber(L, idx);
}

enum token_state { ST_EMPTY, ST_EXPIRED, ST_NOT_YET_VALID, ST_MANDATORY, ST_ADVISORY, ST_FRESH };
static const char *const state_names[] = {"empty", "expired", "not_yet_valid", "mandatory",
                                          "advisory", "fresh"};

static enum token_state state_at(const sg_token *t, double now, double *left) {
  *left = 0;
  if (!t->has_token) return ST_EMPTY;
  *left = t->deadline - now;
  if (*left <= 0) return ST_EXPIRED;
  if (now < t->valid_from) return ST_NOT_YET_VALID;
  if (*left <= t->mandatory) return ST_MANDATORY;
  if (*left <= t->advisory) return ST_ADVISORY;
  return ST_FRESH;
}

static const char *token_state(const sg_token *t, double now, double *left) {
  return state_names[state_at(t, now, left)];
}

/* The coarse monotonic clock is one vDSO read without a counter access. It lags
 * the precise clock by less than a tick, so [coarse, coarse + 2 ticks] surely
 * contains the precise time. The margin is -1 where there is no coarse clock. */
static double coarse_margin(void) {
#ifdef CLOCK_MONOTONIC_COARSE
  struct timespec ts;
  if (clock_getres(CLOCK_MONOTONIC_COARSE, &ts) == 0)
    return 2 * ((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
#endif
  return -1;
}

static void now_window(const sg_token *t, double *lo, double *hi) {
#ifdef CLOCK_MONOTONIC_COARSE
  if (t->coarse_margin >= 0) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    *lo = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
    *hi = *lo + t->coarse_margin;
    return;
  }
#endif
  *lo = *hi = sg_monotonic();
}

/* Fresh at every instant of [lo, hi]: the same comparisons as state_at(), at
 * the ends where they bind (seconds left only shrink as time goes on, also in
 * floating point, and valid_from only matters at the start). */
static int fresh_throughout(const sg_token *t, double lo, double hi) {
  return t->has_token && lo >= t->valid_from && t->deadline - hi > t->fresh_window;
}

static void unref_access(lua_State *L, sg_token *t) {
  if (t->access_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, t->access_ref);
  t->access_ref = LUA_NOREF;
}

static void drop_token(lua_State *L, sg_token *t) {
  secret_clear(&t->access);
  unref_access(L, t);
  t->fingerprint[0] = '\0';
  t->has_token = 0;
}

static void release(lua_State *L, sg_token *t) {
  if (t->closed) return;
  secret_clear(&t->client_id);
  secret_clear(&t->client_secret);
  secret_clear(&t->refresh);
  drop_token(L, t);
  if (t->estimator_ref != LUA_NOREF) {
    luaL_unref(L, LUA_REGISTRYINDEX, t->estimator_ref);
    t->estimator_ref = LUA_NOREF;
  }
  t->closed = 1;
}

/* ---- constructor and configuration --------------------------------------- */

static void set_credentials(lua_State *L, sg_token *t, int idx) {
  size_t n = 0;
  const char *id = req_string_field(L, idx, "client_id", &n);
  const char *secret;
  secret_set(L, &t->client_id, id, n);
  lua_getfield(L, idx, "client_secret");
  secret = NULL;
  if (lua_type(L, -1) == LUA_TSTRING) secret = lua_tolstring(L, -1, &n);
  else if (!lua_isnil(L, -1) && !(lua_isboolean(L, -1) && !lua_toboolean(L, -1)))
    luaL_error(L, "skewguard.token: client_secret must be a string (false or nil for public clients)");
  lua_pop(L, 1);
  if (secret != NULL) secret_set(L, &t->client_secret, secret, n);
  else secret_clear(&t->client_secret);
}

static int l_token_new(lua_State *L) {
  sg_token *t;
  luaL_checktype(L, 1, LUA_TTABLE);
  t = (sg_token *)sg_newuserdata(L, sizeof *t);
  memset(t, 0, sizeof *t);
  t->estimator_ref = LUA_NOREF;
  t->access_ref = LUA_NOREF;
  t->coarse_margin = coarse_margin();
  t->valid_from = -HUGE_VAL;
  t->exp_server = t->nbf_server = NAN;
  t->closed = 1; /* until fully built: __gc of a half-built object does nothing */
  luaL_getmetatable(L, SG_TOKEN_MT);
  lua_setmetatable(L, -2);
  t->buffer = opt_number_field(L, 1, "buffer", 60);
  t->jitter = opt_number_field(L, 1, "jitter", 0.2);
  t->advisory_cap = opt_number_field(L, 1, "advisory_max", 900);
  t->advisory_fraction = opt_number_field(L, 1, "advisory_fraction", 0.1);
  t->stale_refresh = opt_number_field(L, 1, "stale_refresh", 30);
  if (!(t->buffer >= 0 && t->buffer < MAX_EXPIRES_IN)) luaL_argerror(L, 1, "buffer must be >= 0");
  if (!(t->jitter >= 0 && t->jitter <= 1)) luaL_argerror(L, 1, "jitter must be in [0, 1]");
  if (!(t->advisory_cap >= 0 && t->advisory_fraction >= 0 && t->advisory_fraction <= 0.4))
    luaL_argerror(L, 1, "advisory_max >= 0, advisory_fraction in [0, 0.4]");
  if (!(t->stale_refresh > 0)) luaL_argerror(L, 1, "stale_refresh must be > 0");
  t->closed = 0;
  set_credentials(L, t, 1);
  return 1;
}

static int l_set_credentials(lua_State *L) {
  sg_token *t = check_token(L);
  luaL_checktype(L, 2, LUA_TTABLE);
  set_credentials(L, t, 2);
  return 0;
}

/* The estimator is kept alive by the token; accept() converts JWT exp/nbf with it. */
static int l_attach_estimator(lua_State *L) {
  sg_token *t = check_token(L);
  if (!lua_isnil(L, 2) && sg_testudata(L, 2, SG_SKEW_MT) == NULL)
    luaL_argerror(L, 2, "skewguard.skew estimator or nil expected");
  if (t->estimator_ref != LUA_NOREF) luaL_unref(L, LUA_REGISTRYINDEX, t->estimator_ref);
  t->estimator_ref = LUA_NOREF;
  if (!lua_isnil(L, 2)) {
    lua_pushvalue(L, 2);
    t->estimator_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  }
  return 0;
}

/* ---- accepting a token answer -------------------------------------------- */

/* The skew interval [lo, hi] (skew = local - server) to convert server times
 * with: explicit skew_lo/skew_hi options win, else the attached estimator. */
static int skew_bounds(lua_State *L, sg_token *t, int opts, double wall, double *lo, double *hi) {
  double l = opt_number_field(L, opts, "skew_lo", NAN);
  double h = opt_number_field(L, opts, "skew_hi", NAN);
  if (!isnan(l) || !isnan(h)) {
    if (isnan(l) || isnan(h) || !(l <= h) || !isfinite(l) || !isfinite(h))
      luaL_error(L, "skewguard.token: skew_lo and skew_hi must be finite with lo <= hi");
    *lo = l;
    *hi = h;
    return 1;
  }
  if (t->estimator_ref != LUA_NOREF) {
    const sg_skew *est;
    int known;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->estimator_ref);
    est = (const sg_skew *)sg_testudata(L, -1, SG_SKEW_MT);
    known = est != NULL && sg_skew_interval(est, wall, lo, hi);
    lua_pop(L, 1);
    return known;
  }
  return 0;
}

static int l_accept(lua_State *L) {
  sg_token *t = check_token(L);
  double t_send = luaL_checknumber(L, 3);
  int opts = 4;
  double expires_in, deadline, valid_from = -HUGE_VAL, now, pair_mono, pair_wall;
  double exp_server, nbf_server, lo, hi, lifetime, extra;
  const char *access, *refresh = NULL, *type;
  size_t access_n = 0, refresh_n = 0, type_n = 0;
  int have_skew;
  luaL_checktype(L, 2, LUA_TTABLE);
  if (!lua_isnoneornil(L, opts)) luaL_checktype(L, opts, LUA_TTABLE);
  if (!isfinite(t_send)) luaL_argerror(L, 3, "send time must be finite");
  now = opt_number_field(L, opts, "now", NAN);
  if (isnan(now)) now = sg_monotonic();
  /* A (monotonic, wall) pair read together maps server wall times to deadlines. */
  pair_wall = opt_number_field(L, opts, "t_send_wall", NAN);
  if (!isnan(pair_wall)) {
    pair_mono = t_send;
  } else {
    pair_mono = sg_monotonic();
    pair_wall = sg_wall();
  }

  lua_getfield(L, 2, "access_token");
  if (lua_type(L, -1) != LUA_TSTRING)
    return sg_fail(L, "token", "token answer has no access_token");
  access = lua_tolstring(L, -1, &access_n);
  lua_pop(L, 1);
  if (access_n == 0) return sg_fail(L, "token", "token answer has an empty access_token");
  if (access_n > MAX_TOKEN_LEN) return sg_fail(L, "token", "access_token longer than 1 MiB");
  if (!header_safe(access, access_n))
    return sg_fail(L, "token", "access_token contains spaces or control characters");

  lua_getfield(L, 2, "expires_in");
  if (lua_isnil(L, -1)) return sg_fail(L, "token", "token answer has no expires_in");
  if (!lua_isnumber(L, -1)) return sg_fail(L, "token", "expires_in is not a number");
  expires_in = lua_tonumber(L, -1);
  lua_pop(L, 1);
  if (!isfinite(expires_in) || expires_in <= 0 || expires_in > MAX_EXPIRES_IN)
    return sg_fail(L, "token", "expires_in %.17g is not a usable lifetime", expires_in);

  lua_getfield(L, 2, "token_type");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) return sg_fail(L, "token", "token_type is not a string");
    type = lua_tolstring(L, -1, &type_n);
    /* Only bearer tokens can be sent as "Authorization: Bearer" (case-insensitive). */
    if (!is_bearer(type, type_n)) return sg_fail(L, "token", "unsupported token_type (not bearer)");
  }
  lua_pop(L, 1);

  lua_getfield(L, 2, "refresh_token");
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TSTRING) return sg_fail(L, "token", "refresh_token is not a string");
    refresh = lua_tolstring(L, -1, &refresh_n);
    if (refresh_n == 0 || refresh_n > MAX_TOKEN_LEN || !header_safe(refresh, refresh_n))
      return sg_fail(L, "token", "refresh_token is empty, too long or has control characters");
  }
  lua_pop(L, 1); /* the strings stay alive: the answer table holds them */

  deadline = t_send + expires_in;
  exp_server = opt_number_field(L, opts, "exp", NAN);
  nbf_server = opt_number_field(L, opts, "nbf", NAN);
  have_skew = skew_bounds(L, t, opts, pair_wall, &lo, &hi);
  /* Server times count only once we know the skew: converted so the token
   * expires as early and becomes valid as late as the interval allows. */
  if (have_skew && isfinite(exp_server)) {
    double exp_mono = pair_mono + (exp_server + lo - pair_wall);
    if (exp_mono < deadline) deadline = exp_mono;
  }
  if (have_skew && isfinite(nbf_server)) valid_from = pair_mono + (nbf_server + hi - pair_wall);

  if (deadline <= now)
    return sg_fail(L, "token", "token answer is already expired (%.3f s ago)", now - deadline);
  if (valid_from >= deadline)
    return sg_fail(L, "token", "token answer is never valid (not-before is after expiry)");

  lifetime = deadline - t_send;
  if (lifetime <= 0) lifetime = deadline - now;
  secret_set(L, &t->access, access, access_n);
  unref_access(L, t);
  lua_getfield(L, 2, "access_token"); /* the answer's own string: no further copy */
  t->access_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  sg_fingerprint(access, access_n, t->fingerprint);
  if (refresh != NULL) secret_set(L, &t->refresh, refresh, refresh_n);
  (void)snprintf(t->token_type, sizeof t->token_type, "%s", "Bearer");
  t->has_token = 1;
  t->on_monotonic = fabs(now - sg_monotonic()) < 0.5;
  t->issued = t_send;
  t->deadline = deadline;
  t->valid_from = valid_from;
  t->lifetime = lifetime;
  t->exp_server = exp_server;
  t->nbf_server = nbf_server;
  /* A mandatory window of at most half the lifetime keeps short tokens usable. */
  t->mandatory = t->buffer < lifetime / 2 ? t->buffer : lifetime / 2;
  extra = lifetime * t->advisory_fraction;
  if (extra > t->advisory_cap) extra = t->advisory_cap;
  /* Per-token jitter so a fleet sharing a credential does not renew in lock-step. */
  t->advisory = t->mandatory + extra * (1.0 - t->jitter * uniform01());
  t->fresh_window = t->advisory > t->mandatory ? t->advisory : t->mandatory;
  if (t->fresh_window < 0) t->fresh_window = 0;
  t->generation++;
  sg_pushint64(L, t->generation);
  return 1;
}

/* ---- state, material, invalidation -------------------------------------- */

static int l_state(lua_State *L) {
  sg_token *t = check_token(L);
  double left;
  lua_pushstring(L, token_state(t, now_arg(L, 2), &left));
  lua_pushnumber(L, left);
  return 2;
}

static int l_generation(lua_State *L) {
  sg_token *t = check_token(L);
  sg_pushint64(L, t->generation);
  return 1;
}

/* The token, its state and seconds left; policy (use it or not) is the caller's. */
static int l_access_token(lua_State *L) {
  sg_token *t = check_token(L);
  double left;
  const char *state = token_state(t, now_arg(L, 2), &left);
  if (!t->has_token) lua_pushnil(L);
  else lua_rawgeti(L, LUA_REGISTRYINDEX, t->access_ref);
  lua_pushstring(L, state);
  lua_pushnumber(L, left);
  return 3;
}

static int l_authorization(lua_State *L) {
  sg_token *t = check_token(L);
  wbuf b = {NULL, 0, 0, 0};
  if (!t->has_token) return sg_fail(L, "token", "no access token");
  wbuf_adds(&b, t->token_type);
  wbuf_add(&b, " ", 1);
  wbuf_add(&b, t->access.p, t->access.n);
  wbuf_push(L, &b);
  return 1;
}

static int l_has_refresh_token(lua_State *L) {
  sg_token *t = check_token(L);
  lua_pushboolean(L, t->refresh.p != NULL);
  return 1;
}

/* Drops the access token only if `generation` is still current: a caller that
 * saw a 401 must not throw away a token another caller already renewed. */
static int l_invalidate(lua_State *L) {
  sg_token *t = check_token(L);
  double g = luaL_checknumber(L, 2);
  if (t->has_token && g == (double)t->generation) {
    drop_token(L, t);
    lua_pushboolean(L, 1);
  } else {
    lua_pushboolean(L, 0);
  }
  return 1;
}

static int l_forget_refresh_token(lua_State *L) {
  sg_token *t = check_token(L);
  secret_clear(&t->refresh);
  return 0;
}

static int l_info(lua_State *L) {
  sg_token *t = check_token(L);
  double now = now_arg(L, 2), left;
  char fp[SG_FINGERPRINT_LEN + 1];
  const char *state = token_state(t, now, &left);
  lua_newtable(L);
  lua_pushstring(L, state);
  lua_setfield(L, -2, "state");
  sg_pushint64(L, t->generation);
  lua_setfield(L, -2, "generation");
  lua_pushboolean(L, t->refresh.p != NULL);
  lua_setfield(L, -2, "has_refresh_token");
  lua_pushboolean(L, t->refreshing);
  lua_setfield(L, -2, "refreshing");
  lua_pushnumber(L, t->buffer);
  lua_setfield(L, -2, "buffer");
  if (t->has_token) {
    sg_fingerprint(t->access.p, t->access.n, fp);
    lua_pushstring(L, fp);
    lua_setfield(L, -2, "fingerprint");
    lua_pushstring(L, t->token_type);
    lua_setfield(L, -2, "token_type");
    lua_pushnumber(L, left);
    lua_setfield(L, -2, "seconds_left");
    lua_pushnumber(L, t->issued);
    lua_setfield(L, -2, "issued");
    lua_pushnumber(L, t->deadline);
    lua_setfield(L, -2, "deadline");
    lua_pushnumber(L, t->lifetime);
    lua_setfield(L, -2, "lifetime");
    lua_pushnumber(L, t->mandatory);
    lua_setfield(L, -2, "mandatory");
    lua_pushnumber(L, t->advisory);
    lua_setfield(L, -2, "advisory");
    if (isfinite(t->valid_from)) {
      lua_pushnumber(L, t->valid_from);
      lua_setfield(L, -2, "valid_from");
    }
    if (!isnan(t->exp_server)) {
      lua_pushnumber(L, t->exp_server);
      lua_setfield(L, -2, "exp");
    }
    if (!isnan(t->nbf_server)) {
      lua_pushnumber(L, t->nbf_server);
      lua_setfield(L, -2, "nbf");
    }
  }
  return 1;
}

/* ---- the fresh-token fast path ------------------------------------------ */

/* Pushes access, generation, fingerprint when the token is fresh throughout
 * [lo, hi]; otherwise pushes nothing and returns 0. */
static int push_if_fresh(lua_State *L, const sg_token *t, double lo, double hi, int details) {
  if (!fresh_throughout(t, lo, hi)) return 0; /* close() dropped the token */
  lua_rawgeti(L, LUA_REGISTRYINDEX, t->access_ref);
  if (!details) return 1;
  sg_pushint64(L, t->generation);
  lua_pushstring(L, t->fingerprint);
  return 3;
}

/* The answer get() gives in the fresh state, or nil and the state: every other
 * state needs the policy (renewal, single flight, waiting) in Lua. */
static int l_fresh(lua_State *L) {
  sg_token *t = check_token(L);
  double lo, hi, left;
  enum token_state st;
  int n, own_clock = lua_isnoneornil(L, 2);
  if (own_clock) now_window(t, &lo, &hi);
  else lo = hi = luaL_checknumber(L, 2);
  /* Deadlines on another (injected) clock cannot be compared with ours. */
  n = own_clock && !t->on_monotonic ? 0 : push_if_fresh(L, t, lo, hi, 1);
  if (n > 0) return n;
  st = state_at(t, lo, &left);
  if (st == ST_FRESH) st = state_at(t, hi, &left); /* it ends inside the window */
  lua_pushnil(L);
  lua_pushstring(L, state_names[st]);
  return 2;
}

/* reader() -> access | nil; reader(true) -> access, generation, fingerprint | nil.
 * A closure over the token so the hot path pays for one C call and no type
 * check. The coarse clock is enough: its tick (about 4 ms) is far below any
 * window, and the two-tick margin keeps it from ever seeing "fresh" when the
 * precise clock would not. */
static int l_fresh_reader_call(lua_State *L) {
  const sg_token *t = (const sg_token *)lua_touserdata(L, lua_upvalueindex(1));
  double lo, hi;
  int n;
  now_window(t, &lo, &hi);
  n = t->on_monotonic ? push_if_fresh(L, t, lo, hi, lua_toboolean(L, 1)) : 0;
  if (n > 0) return n;
  lua_pushnil(L);
  return 1;
}

static int l_fresh_reader(lua_State *L) {
  check_token(L);
  lua_pushvalue(L, 1);
  lua_pushcclosure(L, l_fresh_reader_call, 1);
  return 1;
}

/* ---- single flight ------------------------------------------------------- */

/* True when the caller now owns the refresh. A marker older than stale_refresh
 * belongs to a caller that died without end_refresh(): take it over. */
static int l_begin_refresh(lua_State *L) {
  sg_token *t = check_token(L);
  double now = now_arg(L, 2);
  if (t->refreshing && now - t->refresh_started < t->stale_refresh) {
    lua_pushboolean(L, 0);
    lua_pushnumber(L, now - t->refresh_started);
    return 2;
  }
  t->refreshing = 1;
  t->refresh_started = now;
  lua_pushboolean(L, 1);
  return 1;
}

static int l_end_refresh(lua_State *L) {
  sg_token *t = check_token(L);
  t->refreshing = 0;
  return 0;
}

static int l_refreshing(lua_State *L) {
  sg_token *t = check_token(L);
  lua_pushboolean(L, t->refreshing);
  if (!t->refreshing) return 1;
  lua_pushnumber(L, t->refresh_started);
  return 2;
}

/* ---- request builders ---------------------------------------------------- */

/* RFC 6749 §2.3.1: id and secret are form-encoded before joining with ':'. */
static void push_token_headers(lua_State *L, sg_token *t, int basic) {
  lua_newtable(L);
  lua_pushliteral(L, "application/x-www-form-urlencoded");
  lua_setfield(L, -2, "Content-Type");
  lua_pushliteral(L, "application/json");
  lua_setfield(L, -2, "Accept");
  if (basic) {
    wbuf creds = {NULL, 0, 0, 0}, hdr = {NULL, 0, 0, 0};
    char *b64;
    size_t cap;
    if (t->client_secret.p == NULL) {
      luaL_error(L, "skewguard.token: this grant needs a client_secret");
      return; /* not reached */
    }
    wbuf_add_encoded(&creds, t->client_id.p, t->client_id.n, 1);
    wbuf_add(&creds, ":", 1);
    wbuf_add_encoded(&creds, t->client_secret.p, t->client_secret.n, 1);
    if (creds.oom) {
      wbuf_free(&creds);
      luaL_error(L, "skewguard.token: out of memory");
      return; /* not reached */
    }
    cap = 4 * ((creds.n + 2) / 3) + 1;
    b64 = malloc(cap);
    if (b64 == NULL) {
      wbuf_free(&creds);
      luaL_error(L, "skewguard.token: out of memory");
      return; /* not reached */
    }
    sg_b64_encode((const unsigned char *)creds.p, creds.n, b64);
    wbuf_free(&creds);
    wbuf_adds(&hdr, "Basic ");
    wbuf_adds(&hdr, b64);
    sg_wipe(b64, cap);
    free(b64);
    wbuf_push(L, &hdr);
    lua_setfield(L, -2, "Authorization");
  }
}

static void maybe_scope(lua_State *L, wbuf *b, int opts) {
  size_t n = 0;
  const char *scope;
  if (lua_isnoneornil(L, opts)) return;
  scope = opt_string_field(L, opts, "scope", &n);
  if (scope != NULL && n > 0) wbuf_param(b, "scope", scope, n, 1);
}

static int l_client_credentials_request(lua_State *L) {
  sg_token *t = check_token(L);
  wbuf b = {NULL, 0, 0, 0};
  if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TTABLE);
  wbuf_adds(&b, "grant_type=client_credentials");
  maybe_scope(L, &b, 2);
  wbuf_push(L, &b);
  push_token_headers(L, t, 1);
  return 2;
}

static int l_refresh_request(lua_State *L) {
  sg_token *t = check_token(L);
  wbuf b = {NULL, 0, 0, 0};
  if (t->refresh.p == NULL) return sg_fail(L, "token", "no refresh token to renew with");
  if (t->client_secret.p == NULL)
    luaL_error(L, "skewguard.token: refresh tokens need a confidential client (client_secret)");
  wbuf_adds(&b, "grant_type=refresh_token");
  wbuf_param(&b, "refresh_token", t->refresh.p, t->refresh.n, 1);
  wbuf_push(L, &b);
  push_token_headers(L, t, 1);
  return 2;
}

static int l_authorization_code_request(lua_State *L) {
  sg_token *t = check_token(L);
  wbuf b = {NULL, 0, 0, 0};
  size_t cn = 0, rn = 0;
  const char *code, *redirect;
  luaL_checktype(L, 2, LUA_TTABLE);
  code = req_string_field(L, 2, "code", &cn);
  redirect = req_string_field(L, 2, "redirect_uri", &rn);
  wbuf_adds(&b, "grant_type=authorization_code");
  wbuf_param(&b, "code", code, cn, 1);
  wbuf_param(&b, "redirect_uri", redirect, rn, 1);
  wbuf_push(L, &b);
  push_token_headers(L, t, 1);
  return 2;
}

/* A public client proves possession with the verifier instead of a secret. */
static int l_pkce_request(lua_State *L) {
  sg_token *t = check_token(L);
  wbuf b = {NULL, 0, 0, 0};
  size_t cn = 0, vn = 0, rn = 0, i;
  const char *code, *verifier, *redirect;
  luaL_checktype(L, 2, LUA_TTABLE);
  code = req_string_field(L, 2, "code", &cn);
  verifier = req_string_field(L, 2, "code_verifier", &vn);
  redirect = req_string_field(L, 2, "redirect_uri", &rn);
  if (vn < 43 || vn > 128) luaL_error(L, "skewguard.token: code_verifier must be 43..128 characters");
  for (i = 0; i < vn; i++) {
    unsigned char c = (unsigned char)verifier[i];
    if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
          c == '-' || c == '.' || c == '_' || c == '~'))
      luaL_error(L, "skewguard.token: code_verifier has a character outside [A-Za-z0-9-._~]");
  }
  wbuf_adds(&b, "grant_type=authorization_code");
  wbuf_param(&b, "code", code, cn, 1);
  wbuf_param(&b, "code_verifier", verifier, vn, 1);
  wbuf_param(&b, "client_id", t->client_id.p, t->client_id.n, 1);
  wbuf_param(&b, "redirect_uri", redirect, rn, 1);
  wbuf_push(L, &b);
  push_token_headers(L, t, 0);
  return 2;
}

static int l_authorize_url(lua_State *L) {
  sg_token *t = check_token(L);
  static const char *const optional[] = {"state", "org", "provider", "prompt", NULL};
  wbuf b = {NULL, 0, 0, 0};
  size_t un = 0, rn = 0, cn = 0, n;
  const char *url, *redirect, *challenge, *v;
  int i;
  luaL_checktype(L, 2, LUA_TTABLE);
  url = req_string_field(L, 2, "authorize_url", &un);
  redirect = req_string_field(L, 2, "redirect_uri", &rn);
  challenge = opt_string_field(L, 2, "code_challenge", &cn); /* confidential clients may omit it */
  wbuf_add(&b, url, un);
  if (memchr(url, '?', un) == NULL) wbuf_add(&b, "?", 1);
  wbuf_param(&b, "response_type", "code", 4, 0);
  wbuf_param(&b, "client_id", t->client_id.p, t->client_id.n, 0);
  wbuf_param(&b, "redirect_uri", redirect, rn, 0);
  if (challenge != NULL) {
    wbuf_param(&b, "code_challenge", challenge, cn, 0);
    wbuf_param(&b, "code_challenge_method", "S256", 4, 0);
  }
  for (i = 0; optional[i] != NULL; i++) {
    v = opt_string_field(L, 2, optional[i], &n);
    if (v != NULL) wbuf_param(&b, optional[i], v, n, 0);
  }
  wbuf_push(L, &b);
  return 1;
}

/* ---- metamethods ---------------------------------------------------------- */

static int l_tostring(lua_State *L) {
  sg_token *t = (sg_token *)luaL_checkudata(L, 1, SG_TOKEN_MT);
  char fp[SG_FINGERPRINT_LEN + 1];
  double left;
  const char *state;
  if (t->closed) {
    lua_pushfstring(L, "%s{closed}", SG_TOKEN_MT);
    return 1;
  }
  state = token_state(t, sg_monotonic(), &left);
  if (!t->has_token) {
    lua_pushfstring(L, "%s{%s}", SG_TOKEN_MT, state);
    return 1;
  }
  sg_fingerprint(t->access.p, t->access.n, fp);
  {
    char line[160];
    (void)snprintf(line, sizeof line, "%s{%s, %s, fp=%s, %.1fs left, gen=%.0f}", SG_TOKEN_MT,
             t->token_type, state, fp, left, (double)t->generation);
    lua_pushstring(L, line);
  }
  return 1;
}

static int l_close(lua_State *L) {
  sg_token *t = (sg_token *)luaL_checkudata(L, 1, SG_TOKEN_MT);
  release(L, t);
  return 0;
}

void sg_open_token(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"set_credentials", l_set_credentials},
    {"attach_estimator", l_attach_estimator},
    {"accept", l_accept},
    {"state", l_state},
    {"generation", l_generation},
    {"access_token", l_access_token},
    {"fresh", l_fresh},
    {"fresh_reader", l_fresh_reader},
    {"authorization", l_authorization},
    {"has_refresh_token", l_has_refresh_token},
    {"forget_refresh_token", l_forget_refresh_token},
    {"invalidate", l_invalidate},
    {"info", l_info},
    {"begin_refresh", l_begin_refresh},
    {"end_refresh", l_end_refresh},
    {"refreshing", l_refreshing},
    {"client_credentials_request", l_client_credentials_request},
    {"refresh_request", l_refresh_request},
    {"authorization_code_request", l_authorization_code_request},
    {"pkce_request", l_pkce_request},
    {"authorize_url", l_authorize_url},
    {"close", l_close},
    {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg fns[] = {{"token", l_token_new}, {NULL, NULL}};
  sg_newclass(L, SG_TOKEN_MT, methods, meta);
  sg_setfuncs(L, fns, 0);
}
