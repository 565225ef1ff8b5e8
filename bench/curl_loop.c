/* The plain libcurl baseline for the request benchmark: N keep-alive GETs on
 * one easy handle with a fixed Authorization header, body discarded. Prints
 * "requests seconds" for the timed loop (after one warm-up request that opens
 * the connection). Not part of skewguard; bench/run.sh builds it.
 *
 *   BENCH_TOKEN=... curl_loop URL COUNT   (the token from the environment, not argv) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <curl/curl.h>

static size_t discard(char *data, size_t size, size_t nmemb, void *ud) {
  (void)data;
  (void)ud;
  return size * nmemb;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
  CURL *easy;
  struct curl_slist *headers = NULL;
  const char *token = getenv("BENCH_TOKEN");
  char *auth;
  long i, count, status = 0;
  double t0 = 0, t1;
  if (argc != 3 || token == NULL) {
    fprintf(stderr, "usage: BENCH_TOKEN=... curl_loop URL COUNT\n");
    return 2;
  }
  count = atol(argv[2]);
  auth = malloc(strlen(token) + 32);
  if (auth == NULL) return 1;
  sprintf(auth, "Authorization: Bearer %s", token);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  easy = curl_easy_init();
  headers = curl_slist_append(headers, auth);
  headers = curl_slist_append(headers, "Accept: application/json");
  curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
  curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard);
  curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
  for (i = -1; i < count; i++) {
    CURLcode rc;
    if (i == 0) t0 = now();
    rc = curl_easy_perform(easy);
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (rc != CURLE_OK || status != 200) {
      fprintf(stderr, "curl_loop: request failed: %s, HTTP %ld\n", curl_easy_strerror(rc), status);
      return 1;
    }
  }
  t1 = now();
  printf("%ld %.6f\n", count, t1 - t0);
  curl_slist_free_all(headers);
  curl_easy_cleanup(easy);
  curl_global_cleanup();
  free(auth);
  return 0;
}
