/* HTTP-date parsing (httpdate.c) straight in C, and Retry-After through the
 * module function. Oracles: a date that parses lies in what a four-digit year
 * can say, and formatting it as IMF-fixdate parses back to the same instant;
 * parse_retry_after never raises on a string and returns a delta in
 * 0..2^31 or a date that the strict parser accepts too. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include "harness.h"
#include "../csrc/sg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int64_t t = 0;
  if (sg_http_date_parse((const char *)data, size, &t)) {
    if (t < 0 || t >= SG_HTTP_DATE_END) abort();
  }
  /* format -> parse round trip and parse_retry_after live in the Lua driver */
  sg_fuzz_run("httpdate", data, size);
  return 0;
}
