/* Response header parsing (http_curl.c): sg_header_line, the pure per-line
 * parser, straight in C; and sg_push_headers, which the libcurl header capture
 * uses to build res.headers and res.header_list, through fuzz/lua/http_headers.lua.
 * The input is a raw header block as a server could send it (any bytes). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../csrc/sg.h"

static int l_push_headers(lua_State *L) {
  size_t n;
  const char *block = luaL_checklstring(L, 1, &n);
  sg_push_headers(L, block, n, 1);
  return 2;
}

static void check_line(const char *line, size_t n) {
  char name[SG_HEADER_NAME_MAX];
  const char *value;
  size_t name_n, value_n, i;
  if (!sg_header_line(line, n, name, &name_n, &value, &value_n)) return;
  if (name_n == 0 || name_n >= SG_HEADER_NAME_MAX) abort();
  if (value < line || value + value_n > line + n) abort();
  for (i = 0; i < name_n; i++)
    if (name[i] == ':' || (name[i] >= 'A' && name[i] <= 'Z')) abort();
  if (value_n > 0 && (value[0] == ' ' || value[0] == '\t')) abort();
  if (value_n > 0 && (value[value_n - 1] == '\r' || value[value_n - 1] == ' ' ||
                      value[value_n - 1] == '\t'))
    abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data, *end = p + size;
  lua_State *L = sg_fuzz_lua("http_headers");
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL) eol = end;
    check_line(p, (size_t)(eol - p));
    p = eol + 1;
  }
  lua_pushcfunction(L, l_push_headers);
  lua_setglobal(L, "push_headers");
  sg_fuzz_run("http_headers", data, size);
  return 0;
}
