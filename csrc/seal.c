/* Sealing token records for a shared store (Redis): AES-256-GCM with a key derived
 * from the client secret by HKDF-SHA256, so read access to the store alone yields
 * no usable token, and a record edited or moved to another key is rejected.
 *
 *   core.seal(secret, aad, plaintext)  -> blob
 *   core.unseal(secret, aad, blob)     -> plaintext | nil, msg, "bogus"
 *
 * blob = version (1 byte) || nonce (12 random bytes) || ciphertext || tag (16 bytes).
 * The key is HKDF(secret, salt = SALT_CONTEXT || aad, info = INFO): one key per store
 * key. The authenticated data is version || aad, so the store key (aad) and the format
 * version are both bound to the ciphertext. */
#include <limits.h>
#include <string.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include "sg.h"

#define SEAL_VERSION 1
#define SEAL_KEY_LEN 32
#define SEAL_NONCE_LEN 12
#define SEAL_TAG_LEN 16
#define SEAL_OVERHEAD (1 + SEAL_NONCE_LEN + SEAL_TAG_LEN)
#define SEAL_MAX_PLAINTEXT (1 << 24) /* token records are a few KiB; far below INT_MAX */
#define SALT_CONTEXT "skewguard/store-record/"
#define INFO "skewguard token record v1"

/* HKDF-SHA256 through EVP_PKEY_derive: the same calls work on OpenSSL 1.1 and 3. */
static int derive_key(const char *secret, size_t secret_len, const char *aad, size_t aad_len,
                      unsigned char key[SEAL_KEY_LEN]) {
  EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, NULL);
  unsigned char *salt;
  size_t salt_len = sizeof(SALT_CONTEXT) - 1 + aad_len, key_len = SEAL_KEY_LEN;
  int ok = 0;
  if (pctx == NULL) return 0;
  salt = (unsigned char *)OPENSSL_malloc(salt_len);
  if (salt == NULL) {
    EVP_PKEY_CTX_free(pctx);
    return 0;
  }
  memcpy(salt, SALT_CONTEXT, sizeof(SALT_CONTEXT) - 1);
  memcpy(salt + sizeof(SALT_CONTEXT) - 1, aad, aad_len);
  if (EVP_PKEY_derive_init(pctx) > 0 && EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) > 0 &&
      EVP_PKEY_CTX_set1_hkdf_salt(pctx, salt, (int)salt_len) > 0 &&
      EVP_PKEY_CTX_set1_hkdf_key(pctx, (unsigned char *)secret, (int)secret_len) > 0 &&
      EVP_PKEY_CTX_add1_hkdf_info(pctx, (unsigned char *)INFO, (int)(sizeof(INFO) - 1)) > 0 &&
      EVP_PKEY_derive(pctx, key, &key_len) > 0 && key_len == SEAL_KEY_LEN)
    ok = 1;
  OPENSSL_free(salt);
  EVP_PKEY_CTX_free(pctx); /* frees (and cleanses) its copy of the secret */
  return ok;
}

static void check_inputs(lua_State *L, size_t secret_len, size_t aad_len) {
  luaL_argcheck(L, secret_len > 0 && secret_len <= 4096, 1, "the client secret (1..4096 bytes) expected");
  luaL_argcheck(L, aad_len <= 4096, 2, "the store key (at most 4096 bytes) expected");
}

static int l_seal(lua_State *L) {
  size_t secret_len, aad_len, n;
  const char *secret = luaL_checklstring(L, 1, &secret_len);
  const char *aad = luaL_checklstring(L, 2, &aad_len);
  const char *plaintext = luaL_checklstring(L, 3, &n);
  unsigned char key[SEAL_KEY_LEN], *blob, *nonce, *ct;
  unsigned char version = SEAL_VERSION;
  EVP_CIPHER_CTX *ctx;
  int len, fin, ok = 0;
  check_inputs(L, secret_len, aad_len);
  luaL_argcheck(L, n <= SEAL_MAX_PLAINTEXT, 3, "record too large to seal");
  blob = (unsigned char *)lua_newuserdata(L, n + SEAL_OVERHEAD);
  nonce = blob + 1;
  ct = nonce + SEAL_NONCE_LEN;
  blob[0] = version;
  /* a random nonce per seal: with 96 bits, collisions are negligible for the few
   * records one secret ever seals */
  if (!sg_random_bytes(nonce, SEAL_NONCE_LEN)) return sg_fail(L, "config", "CSPRNG failed");
  if (!derive_key(secret, secret_len, aad, aad_len, key)) {
    sg_wipe(key, sizeof key);
    return sg_fail(L, "config", "seal: key derivation failed");
  }
  ctx = EVP_CIPHER_CTX_new();
  if (ctx != NULL && EVP_EncryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN, NULL) == 1 &&
      EVP_EncryptInit_ex(ctx, NULL, NULL, key, nonce) == 1 &&
      EVP_EncryptUpdate(ctx, NULL, &len, &version, 1) == 1 &&
      EVP_EncryptUpdate(ctx, NULL, &len, (const unsigned char *)aad, (int)aad_len) == 1 &&
      EVP_EncryptUpdate(ctx, ct, &len, (const unsigned char *)plaintext, (int)n) == 1 &&
      EVP_EncryptFinal_ex(ctx, ct + len, &fin) == 1 && (size_t)len + (size_t)fin == n &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, SEAL_TAG_LEN, ct + n) == 1)
    ok = 1;
  EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
  sg_wipe(key, sizeof key);
  if (!ok) return sg_fail(L, "config", "seal: AES-256-GCM failed");
  lua_pushlstring(L, (const char *)blob, n + SEAL_OVERHEAD);
  return 1;
}

static int l_unseal(lua_State *L) {
  size_t secret_len, aad_len, n, ct_len;
  const char *secret = luaL_checklstring(L, 1, &secret_len);
  const char *aad = luaL_checklstring(L, 2, &aad_len);
  const unsigned char *blob = (const unsigned char *)luaL_checklstring(L, 3, &n);
  unsigned char key[SEAL_KEY_LEN], *plaintext, version;
  unsigned char tag[SEAL_TAG_LEN];
  EVP_CIPHER_CTX *ctx;
  int len, fin, ok = 0;
  check_inputs(L, secret_len, aad_len);
  if (n < SEAL_OVERHEAD || n - SEAL_OVERHEAD > SEAL_MAX_PLAINTEXT)
    return sg_fail(L, "bogus", "sealed record has an impossible length (%d bytes)", (int)(n > INT_MAX ? INT_MAX : n));
  version = blob[0];
  if (version != SEAL_VERSION)
    return sg_fail(L, "bogus", "sealed record has unknown format version %d", (int)version);
  ct_len = n - SEAL_OVERHEAD;
  memcpy(tag, blob + n - SEAL_TAG_LEN, SEAL_TAG_LEN);
  /* +1: a zero-length plaintext still needs a valid pointer */
  plaintext = (unsigned char *)lua_newuserdata(L, ct_len + 1);
  if (!derive_key(secret, secret_len, aad, aad_len, key)) {
    sg_wipe(key, sizeof key);
    return sg_fail(L, "config", "unseal: key derivation failed");
  }
  ctx = EVP_CIPHER_CTX_new();
  if (ctx != NULL && EVP_DecryptInit_ex(ctx, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN, SEAL_NONCE_LEN, NULL) == 1 &&
      EVP_DecryptInit_ex(ctx, NULL, NULL, key, blob + 1) == 1 &&
      EVP_DecryptUpdate(ctx, NULL, &len, &version, 1) == 1 &&
      EVP_DecryptUpdate(ctx, NULL, &len, (const unsigned char *)aad, (int)aad_len) == 1 &&
      EVP_DecryptUpdate(ctx, plaintext, &len, blob + 1 + SEAL_NONCE_LEN, (int)ct_len) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_TAG, SEAL_TAG_LEN, tag) == 1 &&
      EVP_DecryptFinal_ex(ctx, plaintext + len, &fin) == 1 && (size_t)len + (size_t)fin == ct_len)
    ok = 1;
  EVP_CIPHER_CTX_free(ctx);
  sg_wipe(key, sizeof key);
  if (!ok) {
    /* GCM released nothing it had not authenticated, but clear the buffer anyway */
    sg_wipe(plaintext, ct_len + 1);
    return sg_fail(L, "bogus", "sealed record failed authentication (tampered, another key, or another secret)");
  }
  lua_pushlstring(L, (const char *)plaintext, ct_len);
  sg_wipe(plaintext, ct_len + 1);
  return 1;
}

void sg_open_seal(lua_State *L) {
  static const luaL_Reg fns[] = {{"seal", l_seal}, {"unseal", l_unseal}, {NULL, NULL}};
  sg_setfuncs(L, fns, 0);
}
