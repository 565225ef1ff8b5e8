/* A blocking HTTP client on one reusable libcurl easy handle (keep-alive and
 * connection reuse), with header capture, a body size limit, typed errors and
 * the local send/receive instants on both clocks for deadlines and skew samples.
 * Request headers may carry secrets: they are wiped after use and never appear
 * in error messages; libcurl's verbose mode is never switched on. */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <errno.h>
#include <time.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <curl/curl.h>
#include "sg.h"

#define SG_HTTP_MT "skewguard.http"

typedef struct {
  char *p;
  size_t n, cap;
} dbuf;

typedef struct {
  CURL *easy;
  double connect_timeout, timeout;
  size_t max_body;
  char *ca_file, *ca_path, *user_agent;
  dbuf body, head;
  int too_large;
  char errbuf[CURL_ERROR_SIZE];
  unsigned long requests;
  /* The handle holds the per-transport options and the last request was a
   * plain GET: the next plain GET only changes URL, timeouts and headers
   * (curl_easy_reset and twenty setopts per request cost more than the rest
   * of the binding on a keep-alive loopback call). */
  int plain_get_ready;
  /* "Accept-Encoding: ..." for what this libcurl can decode, sent as a header
   * line (with CURLOPT_ACCEPT_ENCODING curl formats it anew per request). */
  char accept_encoding[64];
  int closed;
  /* Read by the transfer's own callbacks: right before the request is sent, and
   * when the (final) status line arrives. */
  double t_send_mono, t_send_wall, t_recv_mono, t_recv_wall;
} sg_http;

static void dbuf_free(dbuf *b) {
  if (b->p != NULL) {
    sg_wipe(b->p, b->cap); /* token answers pass through here */
    free(b->p);
  }
  b->p = NULL;
  b->n = b->cap = 0;
}

static int dbuf_add(dbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    char *p;
    while (cap < b->n + n + 1) cap *= 2;
    p = realloc(b->p, cap);
    if (p == NULL) return 0;
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = '\0';
  return 1;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
  sg_http *h = (sg_http *)ud;
  size_t n = size * nmemb;
  if (h->body.n + n > h->max_body) {
    h->too_large = 1;
    return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
  }
  return dbuf_add(&h->body, data, n) ? n : 0;
}

/* Keeps only the last header block: interim 1xx answers start a new one. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *ud) {
  sg_http *h = (sg_http *)ud;
  size_t n = size * nmemb;
  if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
    /* The server stamped its Date before this line left it: the instant bounds a
     * Date sample from above. The last status line counts (after a 1xx). */
    h->t_recv_mono = sg_monotonic();
    h->t_recv_wall = sg_wall();
    h->head.n = 0;
  }
  if (h->head.n + n > h->max_body) {
    h->too_large = 1;
    return 0;
  }
  return dbuf_add(&h->head, data, n) ? n : 0;
}

#if LIBCURL_VERSION_NUM >= 0x075000
/* Called with the connection made (or reused), right before the request is sent:
 * the server cannot have seen the request earlier, so this bounds a Date sample
 * from below. curl's own PRETRANSFER offset counts from an internal start that
 * is not our t0, and under load the two drift apart by hundreds of microseconds. */
static int on_prereq(void *ud, char *primary_ip, char *local_ip, int primary_port, int local_port) {
  sg_http *h = (sg_http *)ud;
  (void)primary_ip; (void)local_ip; (void)primary_port; (void)local_port;
  h->t_send_mono = sg_monotonic();
  h->t_send_wall = sg_wall();
  return CURL_PREREQFUNC_OK;
}
#endif

static char *dup_opt_string(lua_State *L, int idx, const char *k) {
  char *out = NULL;
  lua_getfield(L, idx, k);
  if (!lua_isnil(L, -1)) {
    size_t n;
    const char *s;
    if (lua_type(L, -1) != LUA_TSTRING) luaL_error(L, "skewguard.http: option '%s' must be a string", k);
    s = lua_tolstring(L, -1, &n);
    out = malloc(n + 1);
    if (out == NULL) {
      luaL_error(L, "skewguard.http: out of memory");
      return NULL; /* not reached: luaL_error does not return */
    }
    memcpy(out, s, n + 1);
  }
  lua_pop(L, 1);
  return out;
}

static double opt_seconds(lua_State *L, int idx, const char *k, double dflt) {
  double v = dflt;
  lua_getfield(L, idx, k);
  if (!lua_isnil(L, -1)) {
    if (lua_type(L, -1) != LUA_TNUMBER) luaL_error(L, "skewguard.http: option '%s' must be a number", k);
    v = lua_tonumber(L, -1);
    if (!(v > 0 && v < 1e6)) luaL_error(L, "skewguard.http: option '%s' must be > 0 seconds", k);
  }
  lua_pop(L, 1);
  return v;
}

static long to_ms(double seconds) {
  double ms = ceil(seconds * 1000.0);
  return ms < 1 ? 1 : (long)ms;
}

static void release(sg_http *h) {
  if (h->closed) return;
  if (h->easy != NULL) curl_easy_cleanup(h->easy);
  h->easy = NULL;
  free(h->ca_file);
  free(h->ca_path);
  free(h->user_agent);
  h->ca_file = h->ca_path = h->user_agent = NULL;
  dbuf_free(&h->body);
  dbuf_free(&h->head);
  h->closed = 1;
}

static sg_http *check_http(lua_State *L) {
  sg_http *h = (sg_http *)luaL_checkudata(L, 1, SG_HTTP_MT);
  if (h->closed) luaL_error(L, "skewguard.http: used after close()");
  return h;
}

static int l_http_new(lua_State *L) {
  sg_http *h;
  int opts = 1;
  if (lua_isnoneornil(L, 1)) { /* no options: an empty table at index 1 */
    lua_settop(L, 0);
    lua_newtable(L);
  }
  luaL_checktype(L, opts, LUA_TTABLE);
  h = (sg_http *)sg_newuserdata(L, sizeof *h);
  memset(h, 0, sizeof *h);
  h->closed = 1; /* nothing to release until built */
  luaL_getmetatable(L, SG_HTTP_MT);
  lua_setmetatable(L, -2);
  h->closed = 0;
  h->connect_timeout = opt_seconds(L, opts, "connect_timeout", 10);
  h->timeout = opt_seconds(L, opts, "timeout", 30);
  lua_getfield(L, opts, "max_body");
  if (lua_isnil(L, -1)) {
    h->max_body = (size_t)8 << 20;
  } else {
    double m = lua_tonumber(L, -1);
    if (lua_type(L, -1) != LUA_TNUMBER || !(m >= 1 && m <= 1e12))
      luaL_error(L, "skewguard.http: option 'max_body' must be a byte count >= 1");
    h->max_body = (size_t)m;
  }
  lua_pop(L, 1);
  h->ca_file = dup_opt_string(L, opts, "ca_file");
  h->ca_path = dup_opt_string(L, opts, "ca_path");
  h->user_agent = dup_opt_string(L, opts, "user_agent");
  {
    /* The encodings CURLOPT_ACCEPT_ENCODING "" would offer, in curl's order
     * (at most 40 characters, the buffer holds 64). */
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    const char *enc[3];
    int k = 0;
    if (v->features & CURL_VERSION_LIBZ) enc[k++] = "deflate, gzip";
#ifdef CURL_VERSION_BROTLI
    if (v->features & CURL_VERSION_BROTLI) enc[k++] = "br";
#endif
#ifdef CURL_VERSION_ZSTD
    if (v->features & CURL_VERSION_ZSTD) enc[k++] = "zstd";
#endif
    if (k == 0) h->accept_encoding[0] = '\0';
    else
      (void)snprintf(h->accept_encoding, sizeof h->accept_encoding, "Accept-Encoding: %s%s%s%s%s",
                     enc[0], k > 1 ? ", " : "", k > 1 ? enc[1] : "", k > 2 ? ", " : "",
                     k > 2 ? enc[2] : "");
  }
  h->easy = curl_easy_init();
  if (h->easy == NULL) luaL_error(L, "skewguard.http: curl_easy_init failed");
  return 1;
}

static const char *error_kind(CURLcode rc, int too_large) {
  if (too_large) return "too_large";
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE: return "network";
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_USE_SSL_FAILED: return "tls";
    case CURLE_FILESIZE_EXCEEDED: return "too_large";
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL: return "config";
    default: return "protocol";
  }
}

/* Header names and values must not smuggle a line break into the request. */
static int header_text_ok(const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++)
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0') return 0;
  return 1;
}

static void free_headers(struct curl_slist *list) {
  struct curl_slist *it;
  for (it = list; it != NULL; it = it->next)
    if (it->data != NULL) sg_wipe(it->data, strlen(it->data));
  curl_slist_free_all(list);
}

/* Builds "Name: value" lines; an empty value uses curl's "Name;" form so the
 * header is sent rather than removed. Returns NULL and sets *bad on a bad entry. */
static struct curl_slist *build_headers(lua_State *L, int idx, const sg_http *h, int has_body,
                                        const char **bad) {
  struct curl_slist *list = NULL, *next;
  const char *user_agent = h->user_agent != NULL ? h->user_agent : "skewguard";
  int own_agent = 0, own_encoding = 0;
  *bad = NULL;
  /* Without this curl waits for "100 Continue" before sending larger bodies. */
  if (has_body) {
    list = curl_slist_append(list, "Expect:");
    if (list == NULL) {
      *bad = "out of memory";
      return NULL;
    }
  }
  if (!lua_isnil(L, idx)) lua_pushnil(L);
  while (!lua_isnil(L, idx) && lua_next(L, idx) != 0) {
    size_t kn, vn;
    const char *k, *v;
    char *line;
    if (lua_type(L, -2) != LUA_TSTRING || !(lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER)) {
      lua_pop(L, 2);
      *bad = "header names and values must be strings";
      break;
    }
    k = lua_tolstring(L, -2, &kn);
    v = lua_tolstring(L, -1, &vn);
    if (kn == 10 && strncasecmp(k, "user-agent", 10) == 0) own_agent = 1;
    if (kn == 15 && strncasecmp(k, "accept-encoding", 15) == 0) own_encoding = 1;
    if (kn == 0 || !header_text_ok(k, kn) || !header_text_ok(v, vn) || memchr(k, ':', kn) != NULL) {
      lua_pop(L, 2);
      *bad = "a header name or value contains a line break, NUL or colon";
      break;
    }
    line = malloc(kn + vn + 3);
    if (line == NULL) {
      lua_pop(L, 2);
      *bad = "out of memory";
      break;
    }
    memcpy(line, k, kn);
    if (vn == 0) {
      line[kn] = ';';
      line[kn + 1] = '\0';
    } else {
      line[kn] = ':';
      line[kn + 1] = ' ';
      memcpy(line + kn + 2, v, vn);
      line[kn + 2 + vn] = '\0';
    }
    next = curl_slist_append(list, line);
    sg_wipe(line, kn + vn + 2);
    free(line);
    lua_pop(L, 1);
    if (next == NULL) {
      lua_pop(L, 1);
      *bad = "out of memory";
      break;
    }
    list = next;
  }
  /* A header line rather than CURLOPT_USERAGENT, which curl re-formats per request. */
  if (*bad == NULL && !own_agent) {
    size_t n = strlen(user_agent);
    char *line = malloc(n + 13);
    if (line == NULL) {
      *bad = "out of memory";
    } else {
      (void)snprintf(line, n + 13, "User-Agent: %s", user_agent);
      next = curl_slist_append(list, line);
      free(line);
      if (next == NULL) *bad = "out of memory";
      else list = next;
    }
  }
  if (*bad == NULL && !own_encoding && h->accept_encoding[0] != '\0') {
    next = curl_slist_append(list, h->accept_encoding);
    if (next == NULL) *bad = "out of memory";
    else list = next;
  }
  if (*bad != NULL) {
    free_headers(list);
    return NULL;
  }
  return list;
}

/* One line of a response header block: a field line gives its name (lower-cased
 * into `name`) and its value (without surrounding blanks and the CR). Returns 0
 * for anything else: a status line, the blank end line, a line without a colon
 * or with an empty or overlong name. Pure, so the fuzzer can call it too. */
int sg_header_line(const char *line, size_t n, char name[SG_HEADER_NAME_MAX], size_t *name_n,
                   const char **value, size_t *value_n) {
  const char *colon, *vs, *ve;
  size_t i, kn;
  if (n >= 5 && memcmp(line, "HTTP/", 5) == 0) return 0;
  colon = memchr(line, ':', n);
  if (colon == NULL || colon == line) return 0;
  kn = (size_t)(colon - line);
  if (kn >= SG_HEADER_NAME_MAX) return 0;
  for (i = 0; i < kn; i++) name[i] = (char)tolower((unsigned char)line[i]);
  vs = colon + 1;
  ve = line + n;
  while (vs < ve && (*vs == ' ' || *vs == '\t')) vs++;
  while (ve > vs && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
  *name_n = kn;
  *value = vs;
  *value_n = (size_t)(ve - vs);
  return 1;
}

/* Pushes the header block as res.headers (lower-case names; a repeated header's
 * values joined with ", " as RFC 9110 §5.3 allows) and res.header_list (every
 * line in order as {name, value}; nil when the request said header_list = false). */
void sg_push_headers(lua_State *L, const char *block, size_t n, int with_list) {
  const char *p = block != NULL ? block : "", *end = p + (block != NULL ? n : 0);
  int list_i = 0;
  const char *q;
  int lines = 0;
  for (q = p; q < end && (q = memchr(q, '\n', (size_t)(end - q))) != NULL; q++) lines++;
  /* Sized up front: growing a table rehashes it at every power of two. */
  lua_createtable(L, 0, lines); /* headers */
  if (with_list) lua_createtable(L, lines, 0); /* header_list */
  else lua_pushnil(L);
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p)), *vs;
    size_t kn, vn;
    char name[SG_HEADER_NAME_MAX];
    if (eol == NULL) eol = end;
    if (sg_header_line(p, (size_t)(eol - p), name, &kn, &vs, &vn)) {
      lua_pushlstring(L, name, kn);
      lua_pushlstring(L, vs, vn); /* headers, list, name, value */
      if (with_list) {
        lua_createtable(L, 2, 0);
        lua_pushvalue(L, -3);
        lua_rawseti(L, -2, 1);
        lua_pushvalue(L, -2);
        lua_rawseti(L, -2, 2);
        lua_rawseti(L, -4, ++list_i);
      }
      lua_pushvalue(L, -2);
      lua_rawget(L, -5);
      if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
      } else { /* a repeated header: "old, value" */
        lua_pushliteral(L, ", ");
        lua_pushvalue(L, -3);
        lua_concat(L, 3);
        lua_remove(L, -2);
      }
      lua_rawset(L, -4);
    }
    p = eol + 1;
  }
}

static double info_seconds(CURL *easy, CURLINFO what) {
  curl_off_t us = 0;
  if (curl_easy_getinfo(easy, what, &us) != CURLE_OK) return 0;
  return (double)us / 1e6;
}

static void set_number(lua_State *L, const char *k, double v) {
  lua_pushnumber(L, v);
  lua_setfield(L, -2, k);
}

/* The options that stay the same for every request of this transport. */
static void set_transport_options(sg_http *h) {
  CURL *e = h->easy;
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, h->errbuf);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L);
  if (h->ca_file != NULL) curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file);
  if (h->ca_path != NULL) curl_easy_setopt(e, CURLOPT_CAPATH, h->ca_path);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)h->max_body);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, h);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, h);
}

static int l_request(lua_State *L) {
  sg_http *h = check_http(L);
  CURL *e;
  CURLcode rc;
  struct curl_slist *headers;
  const char *method, *url, *body = NULL, *bad;
  size_t body_n = 0;
  double timeout, t0_mono, t0_wall, pre, start;
  long status = 0, version = 0, connects = 0;
  int plain_get;
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 2);
  lua_getfield(L, 2, "url");          /* 3 */
  lua_getfield(L, 2, "method");       /* 4 */
  lua_getfield(L, 2, "body");         /* 5 */
  lua_getfield(L, 2, "headers");      /* 6 */
  lua_getfield(L, 2, "timeout");      /* 7 */
  lua_getfield(L, 2, "header_list");  /* 8 */
  if (lua_type(L, 3) != LUA_TSTRING) luaL_error(L, "skewguard.http: req.url must be a string");
  if (!lua_isnil(L, 4) && lua_type(L, 4) != LUA_TSTRING) luaL_error(L, "skewguard.http: req.method must be a string");
  if (!lua_isnil(L, 5) && lua_type(L, 5) != LUA_TSTRING) luaL_error(L, "skewguard.http: req.body must be a string");
  if (!lua_isnil(L, 6) && !lua_istable(L, 6)) luaL_error(L, "skewguard.http: req.headers must be a table");
  if (!lua_isnil(L, 7) && lua_type(L, 7) != LUA_TNUMBER) luaL_error(L, "skewguard.http: req.timeout must be a number");
  if (!lua_isnil(L, 8) && !lua_isboolean(L, 8)) luaL_error(L, "skewguard.http: req.header_list must be a boolean");
  url = lua_tostring(L, 3);
  method = lua_isnil(L, 4) ? "GET" : lua_tostring(L, 4);
  if (!lua_isnil(L, 5)) body = lua_tolstring(L, 5, &body_n);
  timeout = h->timeout;
  if (!lua_isnil(L, 7)) {
    timeout = lua_tonumber(L, 7);
    if (!(timeout > 0 && timeout < 1e6)) luaL_error(L, "skewguard.http: req.timeout must be > 0 seconds");
  }
  {
    size_t i, mn = strlen(method);
    if (mn == 0 || mn > 16) luaL_error(L, "skewguard.http: req.method is empty or too long");
    for (i = 0; i < mn; i++)
      if (!isupper((unsigned char)method[i])) luaL_error(L, "skewguard.http: req.method must be upper-case letters");
  }
  headers = build_headers(L, 6, h, body != NULL, &bad);
  if (headers == NULL) return luaL_error(L, "skewguard.http: %s", bad);

  e = h->easy;
  plain_get = body == NULL && strcmp(method, "GET") == 0;
  if (!(plain_get && h->plain_get_ready)) {
    /* Reset clears per-request options but keeps live connections and caches. */
    curl_easy_reset(e);
    set_transport_options(h);
  }
  h->plain_get_ready = 0;
  h->body.n = h->head.n = 0;
  h->too_large = 0;
  h->errbuf[0] = '\0';
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, to_ms(h->connect_timeout < timeout ? h->connect_timeout : timeout));
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, to_ms(timeout));
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (body != NULL) {
    /* The body string stays on the Lua stack (index 5) for the whole transfer. */
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_n);
    if (strcmp(method, "POST") != 0) curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  } else if (strcmp(method, "GET") != 0) {
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
  }

  /* Both clocks right before the transfer; curl's pretransfer and
   * starttransfer offsets then place the send and first-byte instants. */
  t0_mono = sg_monotonic();
  t0_wall = sg_wall();
  h->t_send_mono = t0_mono; /* without a prereq callback: the conservative start */
  h->t_send_wall = t0_wall;
  h->t_recv_mono = h->t_recv_wall = 0;
#if LIBCURL_VERSION_NUM >= 0x075000
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, h);
#endif
  rc = curl_easy_perform(e);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
  h->plain_get_ready = plain_get;
  free_headers(headers);
  h->requests++;
  if (rc != CURLE_OK) {
    const char *kind = error_kind(rc, h->too_large);
    const char *detail = h->errbuf[0] != '\0' ? h->errbuf : curl_easy_strerror(rc);
    dbuf_free(&h->body);
    if (strcmp(kind, "too_large") == 0)
      return sg_fail(L, kind, "response larger than the %.0f byte limit", (double)h->max_body);
    return sg_fail(L, kind, "%s (curl error %d)", detail, (int)rc);
  }
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_getinfo(e, CURLINFO_HTTP_VERSION, &version);
  curl_easy_getinfo(e, CURLINFO_NUM_CONNECTS, &connects);
  pre = info_seconds(e, CURLINFO_PRETRANSFER_TIME_T);
  start = info_seconds(e, CURLINFO_STARTTRANSFER_TIME_T);

  lua_createtable(L, 0, 20);
  lua_pushinteger(L, (lua_Integer)status);
  lua_setfield(L, -2, "status");
  sg_push_headers(L, h->head.p, h->head.n, lua_isnil(L, 8) || lua_toboolean(L, 8));
  lua_setfield(L, -3, "header_list");
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, h->body.p != NULL ? h->body.p : "", h->body.n);
  lua_setfield(L, -2, "body");
  set_number(L, "t_start_mono", t0_mono);
  set_number(L, "t_start_wall", t0_wall);
  if (h->t_recv_mono == 0) { /* no status line seen (cannot happen on success) */
    h->t_recv_mono = sg_monotonic();
    h->t_recv_wall = sg_wall();
  }
  set_number(L, "t_send_mono", h->t_send_mono);
  set_number(L, "t_send_wall", h->t_send_wall);
  set_number(L, "t_recv_mono", h->t_recv_mono);
  set_number(L, "t_recv_wall", h->t_recv_wall);
  set_number(L, "time_namelookup", info_seconds(e, CURLINFO_NAMELOOKUP_TIME_T));
  set_number(L, "time_connect", info_seconds(e, CURLINFO_CONNECT_TIME_T));
  set_number(L, "time_appconnect", info_seconds(e, CURLINFO_APPCONNECT_TIME_T));
  set_number(L, "time_pretransfer", pre);
  set_number(L, "time_starttransfer", start);
  set_number(L, "time_total", info_seconds(e, CURLINFO_TOTAL_TIME_T));
  lua_pushinteger(L, (lua_Integer)connects);
  lua_setfield(L, -2, "new_connections");
  lua_pushstring(L, version == CURL_HTTP_VERSION_2_0 ? "2" : version == CURL_HTTP_VERSION_1_0 ? "1.0" :
                 version == CURL_HTTP_VERSION_3 ? "3" : "1.1");
  lua_setfield(L, -2, "http_version");
  /* The body buffer may hold a token answer: do not keep it around. */
  sg_wipe(h->body.p, h->body.n);
  sg_wipe(h->head.p, h->head.n);
  return 1;
}

static int l_tostring(lua_State *L) {
  sg_http *h = (sg_http *)luaL_checkudata(L, 1, SG_HTTP_MT);
  if (h->closed) lua_pushfstring(L, "%s{closed}", SG_HTTP_MT);
  else lua_pushfstring(L, "%s{requests=%d}", SG_HTTP_MT, (int)h->requests);
  return 1;
}

static int l_close(lua_State *L) {
  release((sg_http *)luaL_checkudata(L, 1, SG_HTTP_MT));
  return 0;
}

/* Blocking sleep for scripts (the nginx transport uses ngx.sleep instead).
 * Sleeps to an absolute monotonic instant so signals cannot stretch or cut it. */
static int l_sleep(lua_State *L) {
  double seconds = luaL_checknumber(L, 1), until, whole;
  struct timespec ts;
  if (!(seconds >= 0 && seconds < 1e7)) luaL_argerror(L, 1, "seconds must be in [0, 1e7)");
  if (seconds == 0) return 0;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  until = (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9 + seconds;
  whole = floor(until);
  ts.tv_sec = (time_t)whole;
  ts.tv_nsec = (long)((until - whole) * 1e9);
  if (ts.tv_nsec >= 1000000000L) ts.tv_nsec = 999999999L;
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
  return 0;
}

static int l_curl_version(lua_State *L) {
  lua_pushstring(L, curl_version());
  return 1;
}

void sg_open_http(lua_State *L) {
  static const luaL_Reg methods[] = {{"request", l_request}, {"close", l_close}, {NULL, NULL}};
  static const luaL_Reg meta[] = {
    {"__gc", l_close}, {"__close", l_close}, {"__tostring", l_tostring}, {NULL, NULL}};
  static const luaL_Reg fns[] = {{"http", l_http_new}, {"curl_version", l_curl_version},
                                      {"sleep", l_sleep}, {NULL, NULL}};
  /* Process-wide libcurl setup, once per load; it is reference counted and never
   * undone, because other users of libcurl in the process may still need it. */
  curl_global_init(CURL_GLOBAL_DEFAULT);
  sg_newclass(L, SG_HTTP_MT, methods, meta);
  sg_setfuncs(L, fns, 0);
}
