/* Host name check for a peer certificate handed over as PEM. LuaSec verifies the
 * chain but not the name, so the Redis store's LuaSocket+TLS path asks OpenSSL here
 * (nginx cosockets check names themselves in sslhandshake). */
#include <string.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include "sg.h"

/* core.x509_check_host(pem, name) -> true | false | nil, msg, "tls" (unreadable PEM).
 * `name` is a DNS name (wildcards as RFC 6125 allows) or an IPv4/IPv6 literal. */
static int l_x509_check_host(lua_State *L) {
  size_t pem_len, name_len;
  const char *pem = luaL_checklstring(L, 1, &pem_len);
  const char *name = luaL_checklstring(L, 2, &name_len);
  BIO *bio;
  X509 *cert;
  int rc;
  luaL_argcheck(L, name_len > 0 && strlen(name) == name_len, 2, "a host name expected");
  luaL_argcheck(L, pem_len <= 0x7fffffff, 1, "certificate too large");
  bio = BIO_new_mem_buf(pem, (int)pem_len);
  if (bio == NULL) return luaL_error(L, "skewguard.x509_check_host: out of memory");
  cert = PEM_read_bio_X509(bio, NULL, NULL, NULL);
  BIO_free(bio);
  if (cert == NULL) return sg_fail(L, "tls", "peer certificate is not readable PEM");
  rc = X509_check_ip_asc(cert, name, 0);
  if (rc == -2) /* not an IP literal: a DNS name */
    rc = X509_check_host(cert, name, name_len, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL);
  X509_free(cert);
  lua_pushboolean(L, rc == 1);
  return 1;
}

void sg_open_x509(lua_State *L) {
  static const luaL_Reg fns[] = {{"x509_check_host", l_x509_check_host}, {NULL, NULL}};
  sg_setfuncs(L, fns, 0);
}
