/* SNTP (RFC 4330 / RFC 5905) client: a sans-I/O exchange (request, validation,
 * offset arithmetic) plus one blocking convenience query over a connected UDP socket.
 *
 * Timestamps are NTP 32.32 fixed point. Every difference is taken modulo 2^64 and read
 * as a signed value, so an exchange that straddles the era rollover (2036-02-07
 * 06:28:16 UTC, when the 32-bit seconds wrap) still yields the right offset: only the
 * distance between two stamps matters, never which era they are in. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include "sg.h"

/* Linux's kernel receive stamp; the control message type equals the option. */
#if defined(SO_TIMESTAMPNS) && !defined(SCM_TIMESTAMPNS)
#define SCM_TIMESTAMPNS SO_TIMESTAMPNS
#endif

#define SNTP_MT "skewguard.sntp_exchange"
#define SNTP_PACKET_LEN 48
#define NTP_UNIX_OFFSET 2208988800u /* seconds from 1900-01-01 to 1970-01-01 */
#define FP_ONE 4294967296.0         /* 2^32: one second in 32.32 */
#define DEFAULT_MAX_ROOT_DISTANCE 1.0

typedef struct {
  unsigned char request[SNTP_PACKET_LEN];
  uint64_t origin;     /* random transmit value we sent; a genuine reply echoes it */
  uint64_t t1;         /* local wall time at send, 32.32: the real T1 for the offset */
  double t1_wall, t1_mono;
  double max_root_distance;
  int sent;
  int closed;
} sntp_exchange;

/* Outcome of validating one datagram. SNTP_BOGUS means "not an answer to our
 * request" (cannot be authenticated): the caller ignores it and keeps waiting. */
enum { SNTP_OK, SNTP_BOGUS, SNTP_FAIL };

typedef struct {
  int leap, version, mode, stratum, poll, precision;
  char refid[16];
  char kod_code[5];
  double root_delay, root_dispersion, root_distance;
  double offset, delay, skew, uncertainty;
  double t4_wall, t4_mono;
  const char *kind;    /* on SNTP_FAIL / SNTP_BOGUS */
  char message[160];
} sntp_verdict;

/* ---- fixed-point helpers ---- */

static uint32_t be32(const unsigned char *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t be64(const unsigned char *p) {
  return ((uint64_t)be32(p) << 32) | be32(p + 4);
}

static void put_be64(unsigned char *p, uint64_t v) {
  int i;
  for (i = 7; i >= 0; i--) {
    p[i] = (unsigned char)(v & 0xff);
    v >>= 8;
  }
}

/* a - b modulo 2^64 read as two's complement, without implementation-defined casts. */
static int64_t ntp_diff(uint64_t a, uint64_t b) {
  uint64_t d = a - b;
  if (d <= (uint64_t)INT64_MAX) return (int64_t)d;
  return -(int64_t)(~d) - 1;
}

static double fp_seconds(int64_t fp) {
  return (double)fp / FP_ONE;
}

/* Unix seconds (float) -> NTP 32.32; the era is dropped, differences restore it. */
static uint64_t ntp_from_wall(double wall) {
  double whole = floor(wall);
  double frac = (wall - whole) * FP_ONE;
  uint64_t sec = (uint64_t)(int64_t)whole + NTP_UNIX_OFFSET;
  uint64_t fraction = frac >= FP_ONE ? 0xffffffffu : (uint64_t)frac;
  return ((sec & 0xffffffffu) << 32) | fraction;
}

static uint64_t ntp_from_timespec(const struct timespec *ts) {
  uint64_t sec = (uint64_t)(int64_t)ts->tv_sec + NTP_UNIX_OFFSET;
  uint64_t fraction = ((uint64_t)ts->tv_nsec << 32) / 1000000000u;
  return ((sec & 0xffffffffu) << 32) | fraction;
}

static double timespec_seconds(const struct timespec *ts) {
  return (double)ts->tv_sec + (double)ts->tv_nsec * 1e-9;
}

/* Printable rendering of server-chosen bytes: they end up in messages and logs. */
static void ascii_code(const unsigned char *p, char out[5]) {
  int i;
  for (i = 0; i < 4; i++) out[i] = (char)((p[i] >= 0x20 && p[i] < 0x7f) ? p[i] : '?');
  out[4] = '\0';
  for (i = 3; i >= 0 && (p[i] == 0 || out[i] == ' '); i--) out[i] = '\0';
}

/* ---- the exchange ---- */

static void exchange_arm(lua_State *L, sntp_exchange *ex) {
  unsigned char rnd[8];
  do {
    if (!sg_random_bytes(rnd, sizeof rnd)) luaL_error(L, "skewguard.sntp: CSPRNG failed");
    ex->origin = be64(rnd);
  } while (ex->origin == 0); /* zero would match a reply with an unset origin */
  memset(ex->request, 0, sizeof ex->request);
  ex->request[0] = (0 << 6) | (4 << 3) | 3; /* LI 0, version 4, mode 3 (client) */
  put_be64(ex->request + 40, ex->origin);
  ex->sent = 0;
}

static sntp_exchange *check_exchange(lua_State *L, int idx) {
  sntp_exchange *ex = (sntp_exchange *)luaL_checkudata(L, idx, SNTP_MT);
  if (ex->closed) luaL_argerror(L, idx, "SNTP exchange is closed");
  return ex;
}

static void exchange_mark_sent(sntp_exchange *ex, uint64_t t1, double wall, double mono) {
  ex->t1 = t1;
  ex->t1_wall = wall;
  ex->t1_mono = mono;
  ex->sent = 1;
}

static int verdict_fail(sntp_verdict *v, int status, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  (void)vsnprintf(v->message, sizeof v->message, fmt, ap);
  va_end(ap);
  v->kind = kind;
  return status;
}

/* The paranoid part. Order matters: nothing in a datagram is believed before its
 * origin matches our random transmit value, and a Kiss-o'-Death's timestamps are
 * never used. */
static int exchange_validate(const sntp_exchange *ex, const unsigned char *p, size_t n,
                             uint64_t t4, double t4_wall, double t4_mono, sntp_verdict *v) {
  uint64_t origin, t2, t3;
  int64_t d21, d34, d41, d32, offset_fp, delay_fp;
  double local_wall_span, local_mono_span;

  memset(v, 0, sizeof *v);
  v->t4_wall = t4_wall;
  v->t4_mono = t4_mono;
  if (n < SNTP_PACKET_LEN)
    return verdict_fail(v, SNTP_BOGUS, "bogus", "short reply (%u bytes, need %d)",
                        (unsigned)n, SNTP_PACKET_LEN);
  origin = be64(p + 24);
  if (origin != ex->origin)
    return verdict_fail(v, SNTP_BOGUS, "bogus",
                        "reply does not echo our transmit timestamp (spoofed or stale)");

  v->leap = p[0] >> 6;
  v->version = (p[0] >> 3) & 7;
  v->mode = p[0] & 7;
  v->stratum = p[1];
  /* Signed 8-bit fields (log2 seconds), read without implementation-defined casts. */
  v->poll = p[2] < 128 ? p[2] : p[2] - 256;
  v->precision = p[3] < 128 ? p[3] : p[3] - 256;
  v->root_delay = be32(p + 4) / 65536.0; /* unsigned short format (RFC 5905) */
  v->root_dispersion = be32(p + 8) / 65536.0;
  v->root_distance = v->root_delay / 2 + v->root_dispersion;
  if (v->stratum <= 1) ascii_code(p + 12, v->refid);
  else (void)snprintf(v->refid, sizeof v->refid, "%u.%u.%u.%u", p[12], p[13], p[14], p[15]);

  if (v->mode != 4)
    return verdict_fail(v, SNTP_FAIL, "protocol", "reply has mode %d, expected 4 (server)", v->mode);
  if (v->version < 3 || v->version > 4)
    return verdict_fail(v, SNTP_FAIL, "protocol", "reply has version %d, expected 3 or 4",
                        v->version);
  if (v->stratum == 0) {
    ascii_code(p + 12, v->kod_code);
    return verdict_fail(v, SNTP_FAIL, "kiss_of_death", "kiss-o'-death %s",
                        v->kod_code[0] ? v->kod_code : "(empty code)");
  }
  if (v->leap == 3)
    return verdict_fail(v, SNTP_FAIL, "unsynchronised",
                        "server is unsynchronised (leap indicator 3)");
  if (v->stratum >= 16)
    return verdict_fail(v, SNTP_FAIL, "unsynchronised",
                        "server is unsynchronised (stratum %d)", v->stratum);
  t2 = be64(p + 32);
  t3 = be64(p + 40);
  if (t3 == 0) return verdict_fail(v, SNTP_FAIL, "protocol", "reply has a zero transmit timestamp");
  if (t2 == 0) return verdict_fail(v, SNTP_FAIL, "protocol", "reply has a zero receive timestamp");
  d32 = ntp_diff(t3, t2);
  if (d32 < 0)
    return verdict_fail(v, SNTP_FAIL, "protocol",
                        "reply's receive timestamp is %.9f s after its transmit timestamp",
                        -fp_seconds(d32));
  if (v->root_distance > ex->max_root_distance)
    return verdict_fail(v, SNTP_FAIL, "unsynchronised",
                        "server root distance %.6f s exceeds the limit %.6f s",
                        v->root_distance, ex->max_root_distance);

  /* Our own clocks: a wall step between send and receive would poison the offset. */
  d41 = ntp_diff(t4, ex->t1);
  local_wall_span = fp_seconds(d41);
  local_mono_span = t4_mono - ex->t1_mono;
  if (d41 < 0 || local_mono_span < 0 ||
      fabs(local_wall_span - local_mono_span) > 1e-3 + 1e-3 * local_mono_span)
    return verdict_fail(v, SNTP_FAIL, "unsynchronised",
                        "local wall clock stepped during the exchange (wall %.6f s, monotonic %.6f s)",
                        local_wall_span, local_mono_span);

  /* θ = ((T2 - T1) + (T3 - T4)) / 2, halved term by term so the sum cannot overflow. */
  d21 = ntp_diff(t2, ex->t1);
  d34 = ntp_diff(t3, t4);
  offset_fp = d21 / 2 + d34 / 2 + (d21 % 2 + d34 % 2) / 2;
  /* δ = (T4 - T1) - (T3 - T2); both terms are >= 0, so this cannot overflow either. */
  delay_fp = d41 - d32;
  if (delay_fp < 0) delay_fp = 0; /* server's clock ran faster than ours over a tiny span */

  v->offset = fp_seconds(offset_fp);
  v->delay = fp_seconds(delay_fp);
  v->skew = -v->offset;
  v->uncertainty = v->delay / 2 + v->root_distance;
  return SNTP_OK;
}

static void push_field_number(lua_State *L, const char *k, double x) {
  lua_pushnumber(L, x);
  lua_setfield(L, -2, k);
}

static void push_field_int(lua_State *L, const char *k, int x) {
  lua_pushinteger(L, x);
  lua_setfield(L, -2, k);
}

static void push_result(lua_State *L, const sntp_exchange *ex, const sntp_verdict *v) {
  lua_createtable(L, 0, 20);
  push_field_number(L, "skew", v->skew);
  push_field_number(L, "offset", v->offset);
  push_field_number(L, "delay", v->delay);
  push_field_number(L, "uncertainty", v->uncertainty);
  push_field_number(L, "root_delay", v->root_delay);
  push_field_number(L, "root_dispersion", v->root_dispersion);
  push_field_number(L, "root_distance", v->root_distance);
  push_field_int(L, "stratum", v->stratum);
  push_field_int(L, "leap", v->leap);
  push_field_int(L, "version", v->version);
  push_field_int(L, "poll", v->poll);
  push_field_int(L, "precision", v->precision);
  lua_pushstring(L, v->refid);
  lua_setfield(L, -2, "refid");
  /* The sample describes the clocks at the middle of the exchange. */
  push_field_number(L, "wall", (ex->t1_wall + v->t4_wall) / 2);
  push_field_number(L, "mono", (ex->t1_mono + v->t4_mono) / 2);
  push_field_number(L, "rtt", v->t4_mono - ex->t1_mono);
}

/* nil, message, kind[, kiss code[, address]]: the address lets the caller remember a
 * Kiss-o'-Death against the server that sent it, whatever name led there. */
static int push_failure(lua_State *L, const char *prefix, const sntp_verdict *v,
                        const char *address) {
  lua_pushnil(L);
  lua_pushfstring(L, "%s%s", prefix, v->message);
  lua_pushstring(L, v->kind);
  if (strcmp(v->kind, "kiss_of_death") == 0) lua_pushstring(L, v->kod_code);
  else lua_pushnil(L);
  if (address == NULL) return 4;
  lua_pushstring(L, address);
  return 5;
}

static double check_time(lua_State *L, int idx, const char *what) {
  double t = luaL_checknumber(L, idx);
  if (!isfinite(t)) luaL_argerror(L, idx, what);
  return t;
}

/* core.sntp_request([max_root_distance]) -> exchange, request packet (48 bytes) */
static int l_sntp_request(lua_State *L) {
  double limit = luaL_optnumber(L, 1, DEFAULT_MAX_ROOT_DISTANCE);
  sntp_exchange *ex;
  luaL_argcheck(L, isfinite(limit) && limit >= 0, 1, "max root distance must be >= 0 seconds");
  ex = (sntp_exchange *)sg_newuserdata(L, sizeof *ex);
  memset(ex, 0, sizeof *ex);
  ex->max_root_distance = limit;
  luaL_getmetatable(L, SNTP_MT);
  lua_setmetatable(L, -2);
  exchange_arm(L, ex);
  lua_pushlstring(L, (const char *)ex->request, SNTP_PACKET_LEN);
  return 2;
}

static int l_ex_packet(lua_State *L) {
  sntp_exchange *ex = check_exchange(L, 1);
  lua_pushlstring(L, (const char *)ex->request, SNTP_PACKET_LEN);
  return 1;
}

/* ex:sent(mono, wall): both clocks read right before the request left. */
static int l_ex_sent(lua_State *L) {
  sntp_exchange *ex = check_exchange(L, 1);
  double mono = check_time(L, 2, "monotonic send time must be finite");
  double wall = check_time(L, 3, "wall send time must be finite");
  exchange_mark_sent(ex, ntp_from_wall(wall), wall, mono);
  lua_settop(L, 1);
  return 1;
}

/* ex:validate(reply, mono, wall) -> result | nil, message, kind[, code].
 * kind "bogus": not an answer to this request; ignore it and keep waiting. */
static int l_ex_validate(lua_State *L) {
  sntp_exchange *ex = check_exchange(L, 1);
  size_t n;
  const char *reply = luaL_checklstring(L, 2, &n);
  double mono = check_time(L, 3, "monotonic receive time must be finite");
  double wall = check_time(L, 4, "wall receive time must be finite");
  sntp_verdict v;
  if (!ex->sent) return luaL_error(L, "skewguard.sntp: validate() before sent(): T1 is unknown");
  if (exchange_validate(ex, (const unsigned char *)reply, n, ntp_from_wall(wall), wall, mono, &v)
      != SNTP_OK)
    return push_failure(L, "", &v, NULL);
  push_result(L, ex, &v);
  return 1;
}

static int l_ex_close(lua_State *L) {
  sntp_exchange *ex = (sntp_exchange *)luaL_checkudata(L, 1, SNTP_MT);
  if (!ex->closed) {
    sg_wipe(ex, sizeof *ex);
    ex->closed = 1;
  }
  return 0;
}

static int l_ex_tostring(lua_State *L) {
  sntp_exchange *ex = (sntp_exchange *)luaL_checkudata(L, 1, SNTP_MT);
  lua_pushfstring(L, SNTP_MT "{%s}: %p",
                  ex->closed ? "closed" : ex->sent ? "sent" : "armed", (void *)ex);
  return 1;
}

/* ---- blocking query ---- */

typedef struct {
  char host[128];
  char address[64];
  int port;
} server_name;

static void describe_server(server_name *s, const char *host, int port,
                            const struct sockaddr *sa, socklen_t salen) {
  char num[64]; /* INET6_ADDRSTRLEN plus a scope id */
  (void)snprintf(s->host, sizeof s->host, "%s", host);
  s->port = port;
  if (sa && getnameinfo(sa, salen, num, sizeof num, NULL, 0, NI_NUMERICHOST) == 0)
    (void)snprintf(s->address, sizeof s->address, "%s", num);
  else
    s->address[0] = '\0';
}

static void server_prefix(const server_name *s, char *out, size_t n) {
  if (s->address[0] && strcmp(s->address, s->host) != 0)
    (void)snprintf(out, n, "SNTP server %s (%s) port %d: ", s->host, s->address, s->port);
  else
    (void)snprintf(out, n, "SNTP server %s port %d: ", s->host, s->port);
}

static int query_fail(lua_State *L, const server_name *s, const char *kind, const char *fmt, ...) {
  char prefix[256], msg[256];
  va_list ap;
  va_start(ap, fmt);
  (void)vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  server_prefix(s, prefix, sizeof prefix);
  return sg_fail(L, kind, "%s%s", prefix, msg);
}

/* recv() with T4 read as early as possible: the kernel's arrival stamp where the
 * platform has one (it excludes the wake-up latency after poll, which on a loaded
 * machine is most of the error), else the clocks right after recv returns. The
 * monotonic T4 is moved back by the same amount so both clocks describe one instant. */
static ssize_t receive_stamped(int fd, unsigned char *buf, size_t size, struct timespec *wall,
                               struct timespec *mono) {
  struct iovec iov;
  struct msghdr msg;
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(sizeof(struct timespec))];
  } control;
  ssize_t n;
  struct cmsghdr *cm;
  iov.iov_base = buf;
  iov.iov_len = size;
  memset(&msg, 0, sizeof msg);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.space;
  msg.msg_controllen = sizeof control.space;
  n = recvmsg(fd, &msg, MSG_DONTWAIT);
  clock_gettime(CLOCK_REALTIME, wall);
  clock_gettime(CLOCK_MONOTONIC, mono);
  if (n < 0) return n;
#ifdef SO_TIMESTAMPNS
  for (cm = CMSG_FIRSTHDR(&msg); cm != NULL; cm = CMSG_NXTHDR(&msg, cm)) {
    if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_TIMESTAMPNS) {
      struct timespec kernel;
      double lag;
      memcpy(&kernel, CMSG_DATA(cm), sizeof kernel);
      lag = timespec_seconds(wall) - timespec_seconds(&kernel);
      /* Only a plausible stamp: a wall step between arrival and now voids it. */
      if (lag >= 0 && lag < 0.1) {
        double m = timespec_seconds(mono) - lag;
        *wall = kernel;
        mono->tv_sec = (time_t)floor(m);
        mono->tv_nsec = (long)((m - floor(m)) * 1e9);
        if (mono->tv_nsec > 999999999L) mono->tv_nsec = 999999999L;
      }
    }
  }
#else
  (void)cm;
#endif
  return n;
}

/* One address: send, then wait for the genuine reply until the deadline.
 * Returns SNTP_OK (verdict filled), SNTP_FAIL (verdict filled, final answer),
 * or SNTP_BOGUS with errno-ish detail in *err when this address is unusable. */
typedef struct {
  int bogus;              /* datagrams ignored because they could not be ours */
  char last_bogus[160];
  int net_errno;          /* send/recv failure on this address */
  const char *net_what;
  int timed_out;
} attempt_state;

static int query_address(sntp_exchange *ex, const struct addrinfo *ai, double deadline,
                         sntp_verdict *v, attempt_state *st) {
  unsigned char buf[1024];
  struct timespec w1, m1, w4, m4;
  int fd, status = SNTP_BOGUS;

  fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
  if (fd < 0) {
    st->net_errno = errno;
    st->net_what = "socket";
    return SNTP_BOGUS;
  }
#ifdef SO_TIMESTAMPNS
  {
    int on = 1; /* best effort: without it T4 is read in user space */
    (void)setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
  }
#endif
  if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
    st->net_errno = errno;
    st->net_what = "connect";
    close(fd);
    return SNTP_BOGUS;
  }
  /* T1 as late as possible before the datagram leaves. */
  clock_gettime(CLOCK_REALTIME, &w1);
  clock_gettime(CLOCK_MONOTONIC, &m1);
  if (send(fd, ex->request, SNTP_PACKET_LEN, 0) != SNTP_PACKET_LEN) {
    st->net_errno = errno;
    st->net_what = "send";
    close(fd);
    return SNTP_BOGUS;
  }
  exchange_mark_sent(ex, ntp_from_timespec(&w1), timespec_seconds(&w1), timespec_seconds(&m1));

  for (;;) {
    struct pollfd pfd;
    double left = deadline - sg_monotonic();
    int ms, rc;
    ssize_t n;
    if (left <= 0) {
      st->timed_out = 1;
      break;
    }
    ms = (int)ceil(left * 1000.0);
    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    rc = poll(&pfd, 1, ms);
    if (rc < 0) {
      if (errno == EINTR) continue;
      st->net_errno = errno;
      st->net_what = "poll";
      break;
    }
    if (rc == 0) continue; /* the loop head decides on the deadline */
    n = receive_stamped(fd, buf, sizeof buf, &w4, &m4);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      st->net_errno = errno; /* ECONNREFUSED: nothing listens at this address */
      st->net_what = "recv";
      break;
    }
    status = exchange_validate(ex, buf, (size_t)n, ntp_from_timespec(&w4),
                               timespec_seconds(&w4), timespec_seconds(&m4), v);
    if (status != SNTP_BOGUS) break;
    st->bogus++;
    (void)snprintf(st->last_bogus, sizeof st->last_bogus, "%s", v->message);
  }
  close(fd);
  return status;
}

/* core.sntp_query(exchange, host, port, timeout[, refused])
 *   -> result | nil, message, kind[, code[, address]]
 * Tries every address of `host` (IPv6 and IPv4) within one deadline on the monotonic
 * clock; replies that are not ours are ignored until the deadline. `refused` maps
 * numeric addresses to a kiss code: those addresses are not asked at all. */
static int l_sntp_query(lua_State *L) {
  sntp_exchange *ex = check_exchange(L, 1);
  const char *host = luaL_checkstring(L, 2);
  lua_Integer port = luaL_checkinteger(L, 3);
  double timeout = luaL_checknumber(L, 4);
  struct addrinfo hints, *res = NULL, *ai;
  char service[16];
  server_name name;
  attempt_state st;
  sntp_verdict v;
  double deadline;
  int rc, status = SNTP_BOGUS, asked = 0;
  char refused_code[8] = "";

  luaL_argcheck(L, port >= 1 && port <= 65535, 3, "port must be 1..65535");
  luaL_argcheck(L, isfinite(timeout) && timeout > 0, 4, "timeout must be > 0 seconds");
  if (!lua_isnoneornil(L, 5)) luaL_checktype(L, 5, LUA_TTABLE);
  deadline = sg_monotonic() + timeout;
  describe_server(&name, host, (int)port, NULL, 0);
  memset(&st, 0, sizeof st);

  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  hints.ai_protocol = IPPROTO_UDP;
  hints.ai_flags = AI_NUMERICSERV;
  (void)snprintf(service, sizeof service, "%d", (int)port);
  rc = getaddrinfo(host, service, &hints, &res);
  if (rc != 0)
    return query_fail(L, &name, "network", "cannot resolve: %s", gai_strerror(rc));

  for (ai = res; ai != NULL; ai = ai->ai_next) {
    describe_server(&name, host, (int)port, ai->ai_addr, ai->ai_addrlen);
    if (lua_istable(L, 5)) {
      lua_getfield(L, 5, name.address);
      if (lua_isstring(L, -1)) {
        (void)snprintf(refused_code, sizeof refused_code, "%s", lua_tostring(L, -1));
        lua_pop(L, 1);
        continue;
      }
      lua_pop(L, 1);
    }
    asked++;
    st.net_errno = 0;
    st.net_what = NULL;
    status = query_address(ex, ai, deadline, &v, &st);
    if (status != SNTP_BOGUS || st.timed_out) break;
    if (sg_monotonic() >= deadline) {
      st.timed_out = 1;
      break;
    }
  }
  freeaddrinfo(res);

  if (status == SNTP_OK) {
    push_result(L, ex, &v);
    lua_pushstring(L, name.address[0] ? name.address : name.host);
    lua_setfield(L, -2, "server");
    lua_pushstring(L, name.host);
    lua_setfield(L, -2, "host");
    push_field_int(L, "port", name.port);
    push_field_int(L, "bogus", st.bogus);
    return 1;
  }
  if (status == SNTP_FAIL) {
    char prefix[256];
    server_prefix(&name, prefix, sizeof prefix);
    return push_failure(L, prefix, &v, name.address[0] ? name.address : name.host);
  }
  if (asked == 0 && refused_code[0]) {
    query_fail(L, &name, "kiss_of_death",
               "not asked: it sent us kiss-o'-death %s earlier", refused_code);
    lua_pushstring(L, refused_code);
    return 4;
  }
  if (st.bogus > 0)
    return query_fail(L, &name, "bogus",
                      "no genuine reply within %g s; ignored %d bogus datagram%s (last: %s)",
                      timeout, st.bogus, st.bogus == 1 ? "" : "s", st.last_bogus);
  if (st.timed_out)
    return query_fail(L, &name, "timeout", "no reply within %g s", timeout);
  return query_fail(L, &name, "network", "%s: %s", st.net_what ? st.net_what : "query",
                    strerror(st.net_errno));
}

void sg_open_sntp(lua_State *L) {
  static const luaL_Reg methods[] = {
    {"packet", l_ex_packet}, {"sent", l_ex_sent}, {"validate", l_ex_validate},
    {"close", l_ex_close}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__gc", l_ex_close}, {"__close", l_ex_close}, {"__tostring", l_ex_tostring},
    {NULL, NULL}};
  static const luaL_Reg fns[] = {
    {"sntp_request", l_sntp_request}, {"sntp_query", l_sntp_query}, {NULL, NULL}};
  sg_newclass(L, SNTP_MT, methods, meta);
  sg_setfuncs(L, fns, 0);
}
