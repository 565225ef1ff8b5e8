/* HTTP-date (RFC 9110 §5.6.7) and Retry-After (§10.2.3).
 * curl_getdate does the conversion, but it is lenient (it takes time zones,
 * missing fields, 31 Feb, 1969 clamped to 0): a Date header feeds the skew
 * estimator and a Retry-After date decides when we may call again, so the
 * three forms are checked field by field first, and curl's answer is checked
 * back against the fields. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>
#include "sg.h"

static const char *const day_short[7] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const day_long[7] = {"Sunday", "Monday", "Tuesday", "Wednesday",
                                        "Thursday", "Friday", "Saturday"};
static const char *const month_short[12] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

struct fields {
  int wday, day, month, year, hour, min, sec, two_digit_year;
};

struct cursor {
  const char *p, *end;
};

static int lower(int c) { return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c; }

/* Match one of `names` (case-insensitively: day and month names are the only
 * letters, and case carries no meaning in them) and advance. */
static int take_name(struct cursor *c, const char *const *names, int count) {
  int i;
  for (i = 0; i < count; i++) {
    size_t k, len = strlen(names[i]);
    if ((size_t)(c->end - c->p) < len) continue;
    for (k = 0; k < len; k++)
      if (lower((unsigned char)c->p[k]) != lower((unsigned char)names[i][k])) break;
    if (k == len) {
      c->p += len;
      return i;
    }
  }
  return -1;
}

static int take_char(struct cursor *c, char ch) {
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

/* Exactly `digits` decimal digits; -1 otherwise. */
static int take_digits(struct cursor *c, int digits) {
  int v = 0, i;
  if (c->end - c->p < digits) return -1;
  for (i = 0; i < digits; i++) {
    if (c->p[i] < '0' || c->p[i] > '9') return -1;
    v = v * 10 + (c->p[i] - '0');
  }
  c->p += digits;
  return v;
}

static int take_time(struct cursor *c, struct fields *f) {
  if ((f->hour = take_digits(c, 2)) < 0 || !take_char(c, ':')) return 0;
  if ((f->min = take_digits(c, 2)) < 0 || !take_char(c, ':')) return 0;
  return (f->sec = take_digits(c, 2)) >= 0;
}

/* IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT */
static int parse_imf(struct cursor c, struct fields *f) {
  if ((f->wday = take_name(&c, day_short, 7)) < 0) return 0;
  if (!take_char(&c, ',') || !take_char(&c, ' ')) return 0;
  if ((f->day = take_digits(&c, 2)) < 0 || !take_char(&c, ' ')) return 0;
  if ((f->month = take_name(&c, month_short, 12)) < 0 || !take_char(&c, ' ')) return 0;
  if ((f->year = take_digits(&c, 4)) < 0 || !take_char(&c, ' ')) return 0;
  if (!take_time(&c, f) || !take_char(&c, ' ')) return 0;
  f->two_digit_year = 0;
  return c.end - c.p == 3 && memcmp(c.p, "GMT", 3) == 0;
}

/* RFC 850 (obsolete): Sunday, 06-Nov-94 08:49:37 GMT */
static int parse_rfc850(struct cursor c, struct fields *f) {
  if ((f->wday = take_name(&c, day_long, 7)) < 0) return 0;
  if (!take_char(&c, ',') || !take_char(&c, ' ')) return 0;
  if ((f->day = take_digits(&c, 2)) < 0 || !take_char(&c, '-')) return 0;
  if ((f->month = take_name(&c, month_short, 12)) < 0 || !take_char(&c, '-')) return 0;
  if ((f->year = take_digits(&c, 2)) < 0 || !take_char(&c, ' ')) return 0;
  if (!take_time(&c, f) || !take_char(&c, ' ')) return 0;
  f->two_digit_year = 1;
  return c.end - c.p == 3 && memcmp(c.p, "GMT", 3) == 0;
}

/* asctime: Sun Nov  6 08:49:37 1994 */
static int parse_asctime(struct cursor c, struct fields *f) {
  if ((f->wday = take_name(&c, day_short, 7)) < 0 || !take_char(&c, ' ')) return 0;
  if ((f->month = take_name(&c, month_short, 12)) < 0 || !take_char(&c, ' ')) return 0;
  if (take_char(&c, ' ')) f->day = take_digits(&c, 1);
  else f->day = take_digits(&c, 2);
  if (f->day < 0 || !take_char(&c, ' ')) return 0;
  if (!take_time(&c, f) || !take_char(&c, ' ')) return 0;
  if ((f->year = take_digits(&c, 4)) < 0) return 0;
  f->two_digit_year = 0;
  return c.p == c.end;
}

static int days_in_month(int month, int year) {
  static const int days[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
  return days[month] + (month == 1 && leap);
}

int sg_http_date_parse(const char *s, size_t n, int64_t *unix_time) {
  struct cursor c;
  struct fields f;
  char buf[64];
  time_t t;
  struct tm tm;
  /* Tolerate optional whitespace around a field value. */
  while (n > 0 && (*s == ' ' || *s == '\t')) s++, n--;
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n == 0 || n >= sizeof buf) return 0;
  c.p = s;
  c.end = s + n;
  if (!parse_imf(c, &f) && !parse_rfc850(c, &f) && !parse_asctime(c, &f)) return 0;
  if (f.hour > 23 || f.min > 59 || f.sec > 60 || f.day < 1) return 0; /* 60: leap second */
  if (!f.two_digit_year && (f.year < 1970 || f.day > days_in_month(f.month, f.year))) return 0;
  if (f.two_digit_year && f.day > 31) return 0;
  memcpy(buf, s, n);
  buf[n] = '\0';
  t = curl_getdate(buf, NULL);
  if (t == (time_t)-1) return 0;
  /* curl must have read what we read (a leap second lands on the next minute). */
  {
    time_t back = f.sec == 60 ? t - 1 : t;
    if (gmtime_r(&back, &tm) == NULL) return 0;
    if (tm.tm_mday != f.day || tm.tm_mon != f.month || tm.tm_hour != f.hour ||
        tm.tm_min != f.min || tm.tm_sec != (f.sec == 60 ? 59 : f.sec) || tm.tm_wday != f.wday)
      return 0;
    if (f.two_digit_year ? tm.tm_year % 100 != f.year : tm.tm_year + 1900 != f.year) return 0;
  }
  /* 9999-12-31 23:59:60 lands in year 10000, which no HTTP-date can say. */
  if ((int64_t)t >= SG_HTTP_DATE_END) return 0;
  *unix_time = (int64_t)t;
  return 1;
}

/* Formatting uses our own name tables, never strftime: the locale must not leak
 * into a protocol field. */
static int l_format_http_date(lua_State *L) {
  lua_Number when = luaL_checknumber(L, 1);
  char out[32];
  time_t t;
  struct tm tm;
  /* 0 .. 9999-12-31T23:59:59Z: what a four-digit year can say. */
  luaL_argcheck(L, when >= 0 && when < (double)SG_HTTP_DATE_END, 1, "time out of the HTTP-date range");
  t = (time_t)floor(when);
  if (gmtime_r(&t, &tm) == NULL) return luaL_argerror(L, 1, "time not representable");
  (void)snprintf(out, sizeof out, "%s, %02d %s %04d %02d:%02d:%02d GMT", day_short[tm.tm_wday],
           tm.tm_mday, month_short[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
           tm.tm_sec);
  lua_pushstring(L, out);
  return 1;
}

static int l_parse_http_date(lua_State *L) {
  size_t n;
  const char *s = luaL_checklstring(L, 1, &n);
  int64_t t;
  if (!sg_http_date_parse(s, n, &t)) return sg_fail(L, "protocol", "not an HTTP-date");
  sg_pushint64(L, t);
  return 1;
}

/* Retry-After = HTTP-date / delta-seconds. Returns the number and which it was:
 * "delta" (seconds from receipt) or "date" (Unix time on the server's clock). */
static int l_parse_retry_after(lua_State *L) {
  size_t n, i;
  const char *s = luaL_checklstring(L, 1, &n);
  int64_t value = 0;
  while (n > 0 && (*s == ' ' || *s == '\t')) s++, n--;
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t')) n--;
  if (n > 0 && s[0] >= '0' && s[0] <= '9') {
    for (i = 0; i < n; i++) {
      if (s[i] < '0' || s[i] > '9')
        return sg_fail(L, "protocol", "Retry-After: delta-seconds must be digits only");
      value = value * 10 + (s[i] - '0');
      /* 2^31 is the largest delta HTTP caches must represent (RFC 9111 §1.2.2). */
      if (value > 2147483648LL)
        return sg_fail(L, "protocol", "Retry-After: delta-seconds out of range");
    }
    sg_pushint64(L, value);
    lua_pushliteral(L, "delta");
    return 2;
  }
  if (!sg_http_date_parse(s, n, &value))
    return sg_fail(L, "protocol", "Retry-After is neither delta-seconds nor an HTTP-date");
  sg_pushint64(L, value);
  lua_pushliteral(L, "date");
  return 2;
}

void sg_open_httpdate(lua_State *L) {
  static const luaL_Reg fns[] = {{"parse_http_date", l_parse_http_date},
                                 {"format_http_date", l_format_http_date},
                                 {"parse_retry_after", l_parse_retry_after},
                                 {NULL, NULL}};
  sg_setfuncs(L, fns, 0);
}
