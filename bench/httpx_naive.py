"""The naive Python wrapper for the request benchmark: httpx with keep-alive, and
on every call the JWT payload decoded to check that the token is not near expiry.
Prints "requests seconds" for the timed loop (after one warm-up request).

    BENCH_TOKEN=... /usr/bin/python3 bench/httpx_naive.py URL COUNT
"""
import base64
import json
import os
import sys
import time

import httpx


class NaiveClient:
    def __init__(self, token, buffer=60):
        self.token = token
        self.buffer = buffer
        self.http = httpx.Client()

    def current_token(self):
        payload = self.token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        if claims["exp"] - self.buffer <= time.time():
            raise RuntimeError("token near expiry (the benchmark token lives a day)")
        return self.token

    def get(self, url):
        r = self.http.get(url, headers={"Authorization": "Bearer " + self.current_token(),
                                        "Accept": "application/json"})
        if r.status_code != 200:
            raise RuntimeError("HTTP %d" % r.status_code)
        return r


def main():
    url, count, token = sys.argv[1], int(sys.argv[2]), os.environ["BENCH_TOKEN"]
    client = NaiveClient(token)
    client.get(url)
    t0 = time.monotonic()
    for _ in range(count):
        client.get(url)
    print("%d %.6f" % (count, time.monotonic() - t0))


if __name__ == "__main__":
    main()
