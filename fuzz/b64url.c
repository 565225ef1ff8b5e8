/* base64url decoding (b64.c), straight in C. Oracles: no memory error; the
 * decoded length fits the documented bound; a decoding that succeeds is the
 * one canonical encoding (re-encoding gives the input back, padding aside). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "../csrc/sg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *in = (const char *)data;
  size_t cap = SG_B64_DECODED_MAX(size), outlen = 0, unpadded = size, len;
  unsigned char *out = malloc(cap);
  char *again;
  int rc;
  if (out == NULL) return 0;
  rc = sg_b64url_decode(in, size, out, &outlen);
  if (rc != SG_B64_OK) {
    if (strcmp(sg_b64_error(rc), "ok") == 0) abort();
    free(out);
    return 0;
  }
  if (outlen >= cap) abort();
  while (unpadded > 0 && in[unpadded - 1] == '=') unpadded--;
  again = malloc(4 * ((outlen + 2) / 3) + 1);
  if (again == NULL) abort();
  len = sg_b64url_encode(out, outlen, again);
  if (len != unpadded || memcmp(again, in, len) != 0) {
    fprintf(stderr, "b64url: decode then encode does not give the input back\n");
    abort();
  }
  free(again);
  free(out);
  return 0;
}
