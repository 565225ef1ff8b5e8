-- Writes the seed corpora in fuzz/corpus/<target>/ (committed; rerun after a
-- format change): `lua5.4 fuzz/make_corpus.lua` from the repository root after
-- `make`. Seeds are real inputs: RFC 9110 dates, SNTP replies as servers send
-- them, JWTs and Genesys token answers, header blocks as nginx sends them.
package.cpath = "build/lua5.4/?.so;" .. package.cpath
package.path = "lua/?.lua;" .. package.path
local core = require "skewguard.core"

local function write(target, name, data)
  os.execute("mkdir -p fuzz/corpus/" .. target)
  local f = assert(io.open("fuzz/corpus/" .. target .. "/" .. name, "wb"))
  f:write(data)
  f:close()
end

-- base64url
for name, v in pairs({ jose_header = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", one = "YQ", two = "YWI",
  three = "YWJj", padded = "YQ==", url_chars = "_-8_", empty = "", stray_bits = "YR" }) do
  write("b64url", name, v)
end

-- JWTs: signed (as the stand-in issues them), unsecured, opaque, hostile claims
local function b64(s) return core.b64url_encode(s) end
local function jwt(header, claims, sig) return b64(header) .. "." .. b64(claims) .. "." .. b64(sig or "") end
write("jwt", "hs256", jwt('{"alg":"HS256","typ":"JWT"}',
  '{"iss":"https://login.standin.invalid/","sub":"test-client","iat":1700000000,"nbf":1700000000,'
  .. '"exp":1700086400,"jti":"5b0c8a4e-1f6e-4c43-9d0a-2f1d2c3b4a59"}', string.rep("\171", 32)))
write("jwt", "unsecured", jwt('{"alg":"none"}', '{"exp":1700000000}'))
write("jwt", "opaque", "q0bKZ7gYk1n0bYk8v3lJ6mQp2Xr5sTz9uVw4xA1bC2d")
write("jwt", "exp_string", jwt('{"alg":"HS256"}', '{"exp":"tomorrow","iat":1e999}', "sig"))
write("jwt", "whitespace", jwt(' {"alg":"RS256"} ', '\n{"nbf":-1e308}\t', "x"))

-- HTTP-dates and Retry-After
for name, v in pairs({ imf = "Sun, 06 Nov 1994 08:49:37 GMT", rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT",
  asctime = "Sun Nov  6 08:49:37 1994", leap_second = "Sat, 31 Dec 2016 23:59:60 GMT",
  leap_day = "Thu, 29 Feb 2024 12:00:00 GMT", delta = "120", delta_max = " 2147483648 ",
  far = "Fri, 31 Dec 9999 23:59:59 GMT", lower = "sun, 06 nov 1994 08:49:37 GMT" }) do
  write("httpdate", name, v)
end

-- SNTP replies to a request sent at local wall 1700000000.25 (or just before the
-- 2036 era rollover when the poll byte is >= 128): see fuzz/lua/sntp.lua.
local NTP_UNIX = 2208988800
local function be(v, n)
  local out = {}
  for i = n, 1, -1 do out[i] = string.char(math.floor(v) % 256); v = math.floor(v / 256) end
  return table.concat(out)
end
local function ts(unix) -- NTP 32.32, era dropped
  local sec = math.floor(unix)
  return be((sec + NTP_UNIX) % 2 ^ 32, 4) .. be(math.floor((unix - sec) * 2 ^ 32), 4)
end
local function reply(o)
  local li, vn, mode = o.leap or 0, o.version or 4, o.mode or 4
  local t2, t3 = o.t1 + o.offset + 0.01, o.t1 + o.offset + 0.0101
  return string.char(li * 64 + vn * 8 + mode, o.stratum or 2, o.poll or 6, o.precision or 0xE8)
    .. be((o.root_delay or 0.002) * 65536, 4) .. be((o.root_dispersion or 0.001) * 65536, 4)
    .. (o.refid or "\192\168\1\1") .. ts(o.t1 - 10) .. (o.origin or string.rep("\0", 8))
    .. (o.t2zero and string.rep("\0", 8) or ts(t2)) .. ts(t3)
end
local T1, ROLL = 1700000000.25, 2085978496 - 0.5
write("sntp", "ok_plus_7s", reply({ t1 = T1, offset = 7.3, poll = 10 }))
write("sntp", "ok_minus_90s", reply({ t1 = T1, offset = -90, poll = 20, stratum = 1, refid = "GPS\0" }))
write("sntp", "ok_era_rollover", reply({ t1 = ROLL, offset = 0.2, poll = 128 + 10 }))
write("sntp", "kiss_rate", reply({ t1 = T1, offset = 0, stratum = 0, refid = "RATE" }))
write("sntp", "leap3", reply({ t1 = T1, offset = 0, leap = 3 }))
write("sntp", "stratum16", reply({ t1 = T1, offset = 0, stratum = 16 }))
write("sntp", "client_mode", reply({ t1 = T1, offset = 0, mode = 3 }))
write("sntp", "far_root", reply({ t1 = T1, offset = 0, root_dispersion = 2 }))
write("sntp", "zero_receive", reply({ t1 = T1, offset = 0, t2zero = true }))
write("sntp", "spoofed", reply({ t1 = T1, offset = 0, origin = "\238" .. string.rep("\1", 7) }))
write("sntp", "v3_with_extension", reply({ t1 = T1, offset = 1, version = 3 }) .. string.rep("\0", 20))

-- Skew programs (fuzz/lua/skew.lua): op bytes, time steps, Date headers.
local function le(v, n)
  if v < 0 then v = v + 256 ^ n end
  local out = {}
  for i = 1, n do out[i] = string.char(math.floor(v) % 256); v = math.floor(v / 256) end
  return table.concat(out)
end
local function date_op(dt_ms, server_unix, rtt_byte)
  local d = core.format_http_date(server_unix)
  return "\0" .. le(dt_ms, 3) .. string.char(#d) .. d .. string.char(rtt_byte) .. "\0"
end
local BASE = 1700000000
local prog = { "\127\1" }
local now = BASE
for i = 1, 20 do
  now = now + 0.37 + i / 100
  prog[#prog + 1] = date_op(370 + i * 10, math.floor(now - 7.3), 2)
  prog[#prog + 1] = "\2" .. le(0, 3)
end
write("skew", "dates_server_ahead_7s", table.concat(prog))
write("skew", "step_back", "\15\2" .. date_op(0, BASE, 1) .. date_op(-900000, BASE + 400, 1)
  .. "\2" .. le(0, 3) .. "\5" .. le(0, 3) .. le(-30000, 2))
write("skew", "intervals_and_queries", "\7\1" .. "\1" .. le(10, 3) .. "\0" .. le(-50, 3) .. "\100\2"
  .. "\1" .. le(10, 3) .. "\1" .. string.pack("<d", -1e308) .. string.pack("<d", 1e308) .. "\3"
  .. "\3" .. le(10, 3) .. "\1" .. le(12345, 4) .. "\4" .. le(0, 3) .. "\0" .. "\2" .. le(0, 3))
write("skew", "bad_date_long_rtt", "\1\0" .. "\0" .. le(5, 3) .. "\5Sun, \0\0" .. date_op(5, BASE, 250))

-- Token answers (fuzz/lua/token.lua): even first byte = body via the manager with
-- the status picked by the second byte (0 = 200, 3 = 400, 4 = 401, 6 = 429, 8 = 503).
local function answer(status_index, body) return "\2" .. string.char(status_index) .. body end
write("token", "genesys_cc", answer(0,
  '{"access_token":"q0bKZ7gYk1n0bYk8v3lJ6mQp2Xr5sTz9uVw4xA1bC2d","token_type":"bearer","expires_in":86400}'))
write("token", "genesys_code", answer(0, '{"access_token":"Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5","token_type"'
  .. ':"bearer","expires_in":300,"refresh_token":"cmVmcmVzaC10b2tlbi1mb3ItdGhlLWNvZGUtZ3JhbnQ"}'))
write("token", "jwt_answer", answer(0, '{"access_token":"' .. jwt('{"alg":"HS256","typ":"JWT"}',
  '{"iat":' .. BASE .. ',"nbf":' .. BASE .. ',"exp":' .. (BASE + 86400) .. '}', "sig") ..
  '","token_type":"bearer","expires_in":86400}'))
write("token", "rate_limited", answer(3, '{"error":"invalid_request","description":"rate limit exceeded; retry",'
  .. '"error_description":"rate limit exceeded; retry in a moment"}'))
write("token", "invalid_client", answer(4,
  '{"error":"invalid_client","description":"client not found","error_description":"client not found"}'))
write("token", "unavailable", answer(8, '{"message":"service unavailable"}'))
write("token", "truncated", answer(0, '{"access_token":"AT-truncated","token_type":"bearer","expi'))
write("token", "string_expiry", answer(0, '{"access_token":"AT-x","token_type":"Bearer","expires_in":"3600"}'))
write("token", "structured", "\1\1\8AT-fuzz1\3\60\7\0" .. "\3" .. string.pack("<d", BASE + 30) .. "\10")

-- Header blocks as libcurl hands them to the header callback, joined.
write("http_headers", "genesys", "HTTP/1.1 200 OK\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
  .. "Content-Type: application/json\r\nININ-Correlation-Id: 0f6c5b5e-3b8c-4f7a-9d2e-1a2b3c4d5e6f\r\n"
  .. "Retry-After: 2\r\nX-Twice: one\r\nX-Twice: two\r\n\r\n")
write("http_headers", "interim", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 429 Too Many Requests\r\n"
  .. "Retry-After:   7 \t\r\nAge:\r\n\r\n")
write("http_headers", "h2", "HTTP/2 200\r\ndate: Sun, 06 Nov 1994 08:49:37 GMT\r\ncontent-length: 0\r\n\r\n")
write("http_headers", "odd", ":no-name\r\nno colon\r\n" .. string.rep("n", 130) .. ": long\r\nA: b: c\n")
