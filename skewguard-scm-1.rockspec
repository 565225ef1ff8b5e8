rockspec_format = "3.0"
package = "skewguard"
version = "scm-1"
source = { url = "git+file:///dev/null" }
description = {
  summary = "OAuth2 tokens that stay valid despite clock skew, expiry races, revocation and rate limits",
  detailed = [[
A Lua library with a C core for Genesys Cloud CX (and any OAuth2 server): a skew
estimator fed by HTTP Date headers and SNTP, a token manager anchored on the monotonic
clock, 401 refresh-and-retry-once, Retry-After-aware backoff, and OpenResty transports.
]],
  license = "MIT",
}
dependencies = { "lua >= 5.1, < 5.5", "lua-cjson" }
external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
  HIREDIS = { header = "hiredis/hiredis.h", library = "hiredis" },
  OPENSSL = { header = "openssl/evp.h", library = "ssl" },
  CRYPTO = { library = "crypto" },
}
build = {
  type = "make",
  build_variables = {
    CFLAGS = "$(CFLAGS)",
    LUA_INC = "$(LUA_INCDIR)",
    BUILD = "build/rock",
    LDFLAGS = "-L$(CURL_LIBDIR) -L$(HIREDIS_LIBDIR) -L$(OPENSSL_LIBDIR) -L$(CRYPTO_LIBDIR)",
  },
  install_variables = {
    BUILD = "build/rock",
    INST_LIBDIR = "$(LIBDIR)",
    INST_LUADIR = "$(LUADIR)",
    INST_BINDIR = "$(BINDIR)",
  },
}
