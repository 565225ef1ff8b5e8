-- The Genesys stand-in itself, checked with plain HTTP (LuaSocket, raw TCP and the curl
-- CLI), so its clock, counters and scenarios are known right before anything is
-- measured with them.
local socket = require "socket"
local cjson = require "cjson"
local standin = require "support.standin"

local MONTHS = { Jan = 1, Feb = 2, Mar = 3, Apr = 4, May = 5, Jun = 6, Jul = 7, Aug = 8,
                 Sep = 9, Oct = 10, Nov = 11, Dec = 12 }

-- IMF-fixdate -> Unix seconds (days-from-civil, no dependence on the local time zone).
local function parse_http_date(s)
  local d, mon, y, h, mi, sec = s:match("^%a%a%a, (%d%d) (%a%a%a) (%d%d%d%d) (%d%d):(%d%d):(%d%d) GMT$")
  assert(d, "not an IMF-fixdate: " .. tostring(s))
  y, mon = tonumber(y), MONTHS[mon]
  if mon <= 2 then y = y - 1 end
  local era = math.floor(y / 400)
  local yoe = y - era * 400
  local doy = math.floor((153 * (mon + (mon > 2 and -3 or 9)) + 2) / 5) + tonumber(d) - 1
  local doe = yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy
  local days = era * 146097 + doe - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

-- Runs a shell command without the ASan runtime that `make asan` preloads into the
-- interpreter (curl deadlocks at exit under it).
local function sh(cmd)
  local f = assert(io.popen("env -u LD_PRELOAD sh -c '" .. cmd:gsub("'", "'\\''") .. "'"))
  local out = f:read("*a")
  f:close()
  return out
end

local function b64url_sha256(s)
  return (sh("printf '%s' '" .. s .. "' | openssl dgst -sha256 -binary | base64 -w0")
    :gsub("%s", ""):gsub("=", ""):gsub("+", "-"):gsub("/", "_"))
end

-- Raw HTTP/1.1 exchange: returns the status, every header line (repeats kept), body.
local function raw_get(port, path, token)
  local conn = assert(socket.connect("127.0.0.1", port))
  conn:settimeout(5)
  assert(conn:send("GET " .. path .. " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    .. (token and ("Authorization: Bearer " .. token .. "\r\n") or "")
    .. "Connection: close\r\n\r\n"))
  local response = conn:receive("*a")
  conn:close()
  local head, body = response:match("^(.-)\r\n\r\n(.*)$")
  local lines = {}
  for line in head:gmatch("[^\r\n]+") do lines[#lines + 1] = line end
  local status = tonumber(table.remove(lines, 1):match("^HTTP/1%.1 (%d+)"))
  return status, lines, body
end

local function header_values(lines, name)
  local values = {}
  for _, line in ipairs(lines) do
    local n, v = line:match("^([^:]+):%s*(.*)$")
    if n and n:lower() == name:lower() then values[#values + 1] = v end
  end
  return values
end

describe("the Genesys stand-in", function()
  local s

  setup(function() s = standin.start { offset = 7.3, lifetime = 5, workers = 2 } end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  local function api(method, path, token, body)
    local headers = { Authorization = token and ("Bearer " .. token) or nil }
    if body then headers["Content-Type"] = "application/json" end
    local status, headers_out, raw = s:request { method = method, path = path, headers = headers, body = body }
    return status, headers_out, raw, require("cjson.safe").decode(raw)
  end

  local function token_request(form, auth)
    local status, headers, raw = s:request {
      method = "POST", path = "/oauth/token", body = form,
      headers = { ["Content-Type"] = "application/x-www-form-urlencoded", Authorization = auth },
    }
    return status, cjson.decode(raw), headers
  end

  local function expect_date_matches_offset(offset)
    local token = s:token()
    local sent = socket.gettime()
    local status, lines = raw_get(s.port, "/api/v2/organizations/me", token)
    local received = socket.gettime()
    assert.equal(200, status)
    local dates = header_values(lines, "Date")
    assert.equal(1, #dates)
    local server = parse_http_date(dates[1])
    assert.is_true(server >= math.floor(sent + offset) and server <= math.floor(received + offset),
      ("Date %s (%d) outside [%d, %d] for offset %s"):format(dates[1], server,
        math.floor(sent + offset), math.floor(received + offset), offset))
  end

  describe("clock", function()
    it("sends exactly one Date header, on the clock given at start (+7.3 s)", function()
      expect_date_matches_offset(7.3)
    end)

    it("follows offset changes at run time, fractional and negative", function()
      for _, offset in ipairs { -90, 300, 0.45, -0.6 } do
        s:control { offset = offset }
        assert.equal(offset, s:state().offset)
        expect_date_matches_offset(offset)
      end
    end)

    it("checks expiry on its own clock: a forward step expires a token, a step back revives it", function()
      local token = s:token()
      assert.equal(200, (api("GET", "/api/v2/tokens/me", token)))
      s:control { offset = 7.3 + 5.5 }
      local status, _, _, body = api("GET", "/api/v2/tokens/me", token)
      assert.equal(401, status)
      assert.equal("credentials.expired", body.code)
      assert.equal(1, s:counter("api_401_expired"))
      s:control { offset = 7.3 }
      assert.equal(200, (api("GET", "/api/v2/tokens/me", token)))
    end)

    it("can drop the Date header and add an Age header", function()
      s:control { date_header = false, age = 7 }
      local status, lines = raw_get(s.port, "/api/v2/nothing")
      assert.equal(401, status)
      assert.same({}, header_values(lines, "Date"))
      assert.same({ "7" }, header_values(lines, "Age"))
    end)
  end)

  describe("token endpoint", function()
    it("grants client credentials with Basic auth, without a refresh token", function()
      local status, body, headers = token_request("grant_type=client_credentials", s:basic_auth())
      assert.equal(200, status)
      assert.equal("bearer", body.token_type)
      assert.equal(5, body.expires_in)
      assert.is_nil(body.refresh_token)
      assert.is_true(#body.access_token >= 32)
      assert.matches("^%x+%-%x+%-4%x+%-[89ab]%x+%-%x+$", headers["inin-correlation-id"])
      local c = s:counters()
      assert.equal(1, c.token_requests)
      assert.equal(1, c.token_grant_client_credentials)
      assert.equal(1, c.issued_client_credentials)
    end)

    it("rejects a wrong secret with invalid_client in the Genesys error shape", function()
      local status, body = token_request("grant_type=client_credentials", s:basic_auth(nil, "nope"))
      assert.equal(401, status)
      assert.equal("invalid_client", body.error)
      assert.equal(body.description, body.error_description)
      assert.equal(0, s:counter("issued_client_credentials"))
    end)

    it("accepts a secret with : + % & and non-ASCII raw or form-encoded (RFC 6749 §2.3.1)", function()
      local secret = "p:a+s%s&w\195\182rd x"
      s:control { client_secret = secret }
      assert.equal(200, (token_request("grant_type=client_credentials", s:basic_auth(nil, secret))))
      local encoded = "p%3Aa%2Bs%25s%26w%C3%B6rd+x"
      assert.equal(200, (token_request("grant_type=client_credentials", s:basic_auth(nil, encoded))))
      assert.equal(401, (token_request("grant_type=client_credentials", s:basic_auth(nil, "p:a+s%s&w"))))
    end)

    it("issues HS256 JWTs on the skewed clock when asked", function()
      s:control { jwt = true, lifetime = 600 }
      local sent = socket.gettime()
      local _, body = token_request("grant_type=client_credentials", s:basic_auth())
      local received = socket.gettime()
      local header, payload, signature = body.access_token:match("^([%w_-]+)%.([%w_-]+)%.([%w_-]+)$")
      assert.is_truthy(signature)
      local function decode(part)
        part = part:gsub("-", "+"):gsub("_", "/")
        return cjson.decode((require("mime").unb64(part .. string.rep("=", (4 - #part % 4) % 4))))
      end
      assert.same({ alg = "HS256", typ = "JWT" }, decode(header))
      local claims = decode(payload)
      assert.is_true(claims.iat >= math.floor(sent + 7.3) and claims.iat <= math.floor(received + 7.3))
      assert.equal(claims.iat, claims.nbf)
      assert.equal(claims.iat + 600, claims.exp)
      assert.equal("test-client", claims.sub)
      assert.is_string(claims.iss)
      assert.is_string(claims.jti)
      assert.equal(200, (api("GET", "/api/v2/tokens/me", body.access_token)))
    end)

    it("runs the confidential authorization-code flow with refresh-token rotation", function()
      local status, headers = s:request { path = "/oauth/authorize?response_type=code&client_id=test-client"
        .. "&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&state=xyz" }
      assert.equal(302, status)
      local code = headers.location:match("^http://localhost/cb%?code=([%w_-]+)&state=xyz$")
      assert.is_truthy(code)
      local form = "grant_type=authorization_code&code=" .. code .. "&redirect_uri=http%3A%2F%2Flocalhost%2Fcb"
      local st, body = token_request(form, s:basic_auth())
      assert.equal(200, st)
      assert.is_string(body.refresh_token)
      -- A code is good once.
      local again, err = token_request(form, s:basic_auth())
      assert.equal(400, again)
      assert.equal("invalid_grant", err.error)
      -- Each refresh answers a new refresh token; the old one stops working.
      local st2, body2 = token_request("grant_type=refresh_token&refresh_token=" .. body.refresh_token, s:basic_auth())
      assert.equal(200, st2)
      assert.is_string(body2.refresh_token)
      assert.not_equal(body.refresh_token, body2.refresh_token)
      local st3, err3 = token_request("grant_type=refresh_token&refresh_token=" .. body.refresh_token, s:basic_auth())
      assert.equal(400, st3)
      assert.equal("invalid_grant", err3.error)
      assert.equal(200, (token_request("grant_type=refresh_token&refresh_token=" .. body2.refresh_token,
        s:basic_auth())))
      assert.equal(200, (api("GET", "/api/v2/tokens/me", body2.access_token)))
      local c = s:counters()
      assert.equal(1, c.issued_authorization_code)
      assert.equal(2, c.issued_refresh_token)
      assert.equal(3, c.token_grant_refresh_token)
    end)

    it("checks the PKCE verifier of a public client against the S256 challenge", function()
      local verifier = "Xq3-._~abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMN"
      local challenge = b64url_sha256(verifier)
      local function authorize()
        local _, headers = s:request { path = "/oauth/authorize?response_type=code&client_id=test-public-client"
          .. "&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&code_challenge=" .. challenge
          .. "&code_challenge_method=S256" }
        return headers.location:match("code=([%w_-]+)")
      end
      local base = "grant_type=authorization_code&client_id=test-public-client"
        .. "&redirect_uri=http%3A%2F%2Flocalhost%2Fcb&code="
      local status, err = token_request(base .. authorize() .. "&code_verifier=" .. verifier:sub(1, -2) .. "Z")
      assert.equal(400, status)
      assert.equal("invalid_grant", err.error)
      local ok, body = token_request(base .. authorize() .. "&code_verifier=" .. verifier)
      assert.equal(200, ok)
      assert.is_nil(body.refresh_token) -- public clients get none
      assert.equal(1, s:counter("token_pkce"))
      assert.equal(1, s:counter("token_pkce_failed"))
    end)

    it("answers its rate limit the Genesys way and can fail with 5xx", function()
      s:control { token = { kind = "rate_limit", count = 1 } }
      local status, body = token_request("grant_type=client_credentials", s:basic_auth())
      assert.equal(400, status)
      assert.equal("invalid_request", body.error)
      assert.matches("^rate limit exceeded;", body.error_description)
      s:control { token = { kind = "status", status = 503, count = 1 } }
      assert.equal(503, (token_request("grant_type=client_credentials", s:basic_auth())))
      assert.equal(200, (token_request("grant_type=client_credentials", s:basic_auth())))
      local c = s:counters()
      assert.equal(1, c.token_rate_limited)
      assert.equal(1, c.token_5xx)
      assert.equal(3, c.token_grant_client_credentials)
    end)
  end)

  describe("API", function()
    it("tells unknown, revoked and missing tokens apart in counters, all bad.credentials-style", function()
      local status, _, _, body = api("GET", "/api/v2/organizations/me", "not-a-token")
      assert.equal(401, status)
      assert.equal("bad.credentials", body.code)
      assert.equal(401, body.status)
      assert.same({}, body.details)
      assert.same({}, body.errors)
      local token = s:token()
      local st, _, raw = api("DELETE", "/api/v2/tokens/me", token)
      assert.equal(204, st)
      assert.equal("", raw)
      local st2, headers, _, body2 = api("GET", "/api/v2/organizations/me", token)
      assert.equal(401, st2)
      assert.equal("bad.credentials", body2.code)
      assert.equal(headers["inin-correlation-id"], body2.contextId)
      local st3, _, _, body3 = api("GET", "/api/v2/organizations/me")
      assert.equal(401, st3)
      assert.equal("authentication.required", body3.code)
      local c = s:counters()
      assert.equal(1, c.api_401_unknown)
      assert.equal(1, c.api_401_revoked)
      assert.equal(1, c.api_401_missing)
      assert.equal(3, c.api_401)
      assert.equal(4, c.api_requests)
    end)

    it("revokes every token on request, and can answer 401 to every call", function()
      local a, b = s:token(), s:token()
      s:control { revoke_all = true }
      assert.equal(401, (api("GET", "/api/v2/tokens/me", a)))
      assert.equal(401, (api("GET", "/api/v2/tokens/me", b)))
      local fresh = s:token()
      assert.equal(200, (api("GET", "/api/v2/tokens/me", fresh)))
      s:control { api_401_all = true }
      assert.equal(401, (api("GET", "/api/v2/tokens/me", fresh)))
      s:control { api_401_all = false }
      assert.equal(200, (api("GET", "/api/v2/tokens/me?preserveIdleTTL=true", fresh)))
      assert.equal(2, s:counter("api_401_revoked"))
      assert.equal(1, s:counter("api_401_forced"))
    end)

    it("models the idle-token timeout; preserveIdleTTL does not reset the idle timer", function()
      s:control { idle_timeout = 0.8 }
      local kept, idle = s:token(), s:token()
      socket.sleep(0.45)
      assert.equal(200, (api("GET", "/api/v2/organizations/me", kept)))
      assert.equal(200, (api("GET", "/api/v2/tokens/me?preserveIdleTTL=true", idle)))
      socket.sleep(0.45)
      assert.equal(200, (api("GET", "/api/v2/tokens/me?preserveIdleTTL=true", kept)))
      local status, _, _, body = api("GET", "/api/v2/organizations/me", idle)
      assert.equal(401, status)
      assert.equal("credentials.expired", body.code)
      assert.equal(1, s:counter("api_401_idle"))
    end)

    it("pages /api/v2/routing/queues with nextUri until the last page", function()
      local token = s:token()
      local path, seen, pages = "/api/v2/routing/queues?pageSize=25", {}, 0
      while path do
        local status, _, _, body = api("GET", path, token)
        assert.equal(200, status)
        pages = pages + 1
        assert.equal(57, body.total)
        assert.equal(3, body.pageCount)
        assert.equal(pages, body.pageNumber)
        for _, q in ipairs(body.entities) do seen[#seen + 1] = q.id end
        path = body.nextUri
        if pages < 3 then assert.matches("^/api/v2/routing/queues%?", path) end
      end
      assert.equal(3, pages)
      assert.equal(57, #seen)
      s:control { queues_total = 4 }
      local _, _, _, body = api("GET", "/api/v2/routing/queues?pageSize=10", token)
      assert.equal(4, #body.entities)
      assert.is_nil(body.nextUri)
      assert.equal(400, (api("GET", "/api/v2/routing/queues?pageSize=0", token)))
    end)

    it("echoes POST bodies and answers unknown paths with a Genesys 404", function()
      local token = s:token()
      local status, _, _, body = api("POST", "/api/v2/echo?x=1", token, '{"a":[1,2]}')
      assert.equal(200, status)
      assert.equal("POST", body.method)
      assert.same({ a = { 1, 2 } }, body.body)
      assert.equal("x=1", body.query)
      local st, _, _, err = api("GET", "/api/v2/no/such/thing", token)
      assert.equal(404, st)
      assert.equal("not.found", err.code)
      local st2, headers = s:request { path = "/elsewhere" }
      assert.equal(404, st2)
      assert.truthy(headers["inin-correlation-id"])
    end)
  end)

  describe("scenarios", function()
    it("answers the next N calls 429 with Retry-After seconds and counts early retries", function()
      local token = s:token()
      s:control { api = { kind = "rate_limit", count = 2, retry_after = 1 } }
      local status, headers, _, body = api("GET", "/api/v2/tokens/me", token)
      assert.equal(429, status)
      assert.equal("1", headers["retry-after"])
      assert.equal("too.many.requests.retry.after", body.code)
      assert.matches("%[1%] seconds", body.message)
      -- Straight back: early (and answered 429 again).
      assert.equal(429, (api("GET", "/api/v2/tokens/me", token)))
      assert.equal(1, s:counter("early_retries"))
      assert.equal(1, s:counter("early_retries_same_token"))
      socket.sleep(1.05)
      assert.equal(200, (api("GET", "/api/v2/tokens/me", token)))
      local c = s:counters()
      assert.equal(2, c.api_429)
      assert.equal(1, c.early_retries)
    end)

    it("can give Retry-After as an HTTP-date on the skewed clock", function()
      local token = s:token()
      s:control { api = { kind = "rate_limit", count = 1, retry_after = 3, retry_after_date = true } }
      local sent = socket.gettime()
      local status, headers = api("GET", "/api/v2/tokens/me", token)
      assert.equal(429, status)
      local at = parse_http_date(headers["retry-after"])
      assert.is_true(at >= math.ceil(sent + 7.3 + 3) and at <= math.ceil(socket.gettime() + 7.3 + 3))
    end)

    it("answers 403 missing.permissions and 5xx, scoped by method when asked", function()
      local token = s:token()
      s:control { api = { kind = "forbidden", count = 1 } }
      local status, _, _, body = api("GET", "/api/v2/organizations/me", token)
      assert.equal(403, status)
      assert.equal("missing.permissions", body.code)
      s:control { api = { kind = "status", status = 502, count = 1, method = "POST" } }
      assert.equal(200, (api("GET", "/api/v2/organizations/me", token)))
      assert.equal(502, (api("POST", "/api/v2/echo", token, "{}")))
      assert.equal(200, (api("POST", "/api/v2/echo", token, "{}")))
      s:control { api = { kind = "status", status = 503, count = 0, path = "/api/v2/routing" } }
      for _ = 1, 3 do assert.equal(503, (api("GET", "/api/v2/routing/queues", token))) end
      assert.equal(200, (api("GET", "/api/v2/organizations/me", token)))
      s:control { api = false }
      assert.equal(200, (api("GET", "/api/v2/routing/queues", token)))
      local c = s:counters()
      assert.equal(1, c.api_403)
      assert.equal(4, c.api_5xx)
    end)

    it("hangs for T seconds without blocking other requests", function()
      local token = s:token()
      -- 1.5 s: long enough that the second curl (a process start away on a loaded
      -- machine) arrives while the first is still held
      s:control { api = { kind = "hang", seconds = 1.5, count = 2 } }
      local url = s.url .. "/api/v2/tokens/me"
      local started = socket.gettime()
      local out = sh(("for i in 1 2; do curl -s --max-time 5 -o /dev/null -w '%%{http_code}\\n' "
        .. "-H 'Authorization: Bearer %s' %s & done; wait"):format(token, url))
      local elapsed = socket.gettime() - started
      assert.equal("200\n200\n", out)
      -- Served side by side: one after the other would take 3 s.
      assert.is_true(elapsed >= 1.5 and elapsed < 3, "elapsed " .. elapsed)
      assert.equal(2, s:counter("max_inflight"))
      assert.equal(0, s:counter("inflight"))
    end)

    it("sends malformed, cut and short (transfer error) JSON", function()
      local token = s:token()
      s:control { api = { kind = "malformed" } }
      local status, _, raw = api("GET", "/api/v2/organizations/me", token)
      assert.equal(200, status)
      assert.is_nil(require("cjson.safe").decode(raw))
      s:control { api = { kind = "truncated", mode = "cut" } }
      local st2, _, raw2 = api("GET", "/api/v2/organizations/me", token)
      assert.equal(200, st2)
      assert.is_nil(require("cjson.safe").decode(raw2))
      assert.matches('^{"', raw2)
      s:control { api = { kind = "truncated", mode = "short" } }
      local out = sh(("curl -s --max-time 5 -o /dev/null -w '%%{http_code}' "
        .. "-H 'Authorization: Bearer %s' %s; echo \" $?\"")
        :format(token, s.url .. "/api/v2/organizations/me"))
      assert.equal("200 18\n", out) -- CURLE_PARTIAL_FILE
      assert.equal(200, (api("GET", "/api/v2/organizations/me", token)))
    end)

    it("sends a huge body of the requested size", function()
      local token = s:token()
      s:control { api = { kind = "huge", size = 5 * 1024 * 1024 } }
      local status, headers, raw = api("GET", "/api/v2/organizations/me", token)
      assert.equal(200, status)
      assert.equal(5 * 1024 * 1024, #raw)
      assert.equal(tostring(#raw), headers["content-length"])
      assert.equal(5 * 1024 * 1024 - 28, #cjson.decode(raw).padding)
    end)

    it("can hang or garble the token endpoint", function()
      s:control { token = { kind = "malformed", count = 1 } }
      local status, _, raw = s:request { method = "POST", path = "/oauth/token",
        body = "grant_type=client_credentials",
        headers = { ["Content-Type"] = "application/x-www-form-urlencoded", Authorization = s:basic_auth() } }
      assert.equal(200, status)
      assert.is_nil(require("cjson.safe").decode(raw))
      s:control { token = { kind = "hang", seconds = 0.3, count = 1 } }
      local started = socket.gettime()
      assert.is_string(s:token())
      assert.is_true(socket.gettime() - started >= 0.3)
    end)

    it("rejects bad controls without changing anything", function()
      assert.has_error(function() s:control { api = { kind = "nope" } } end)
      assert.has_error(function() s:control { offset = "soon" } end)
      assert.has_error(function() s:control { lifetime = 10, bogus = 1 } end)
      assert.equal(5, s:state().lifetime)
    end)
  end)
end)

-- Running and not a zombie (a stopped daemon waits for its adoptive parent to reap it).
local function alive(pid)
  local state = sh("ps -o stat= -p " .. pid .. " 2>/dev/null")
  return state ~= "" and not state:match("^%s*Z")
end

describe("the stand-in process", function()
  it("serves HTTPS with HTTP/2 and a certificate made at start, and stops completely", function()
    local s = standin.start { tls = true, offset = -3 }
    local ok, err = pcall(function()
      assert.matches("^https://127%.0%.0%.1:%d+$", s.url)
      local out = sh(("curl -s --max-time 5 --http2 --cacert %s -u test-client:test-secret "
        .. "-d grant_type=client_credentials "
        .. "-w ' %%{http_version}' %s/oauth/token"):format(s.ca_file, s.url))
      local json, version = out:match("^(.*) (%S+)$")
      assert.equal("2", version)
      assert.is_string(cjson.decode(json).access_token)
      assert.equal(1, s:counter("issued_client_credentials"))
    end)
    s:stop()
    assert(ok, err)
    assert.is_false(alive(s.pid))
  end)

  it("refuses bad options with a message, starting nothing", function()
    for option, message in pairs {
      ["--offset soon"] = "--offset must be a number, got 'soon'",
      ["--workers 0"] = "--workers must be a whole number >= 1",
      ["--bogus"] = "unknown option --bogus",
    } do
      local out = sh("sh tools/standin/run start " .. option .. " 2>&1; echo \"exit $?\"")
      assert.matches(message, out, 1, true)
      assert.matches("exit 1\n$", out)
      assert.is_nil(out:match("standin: http"))
    end
  end)

  it("stops by itself when its owner process is gone", function()
    local owner = sh("sleep 30 >/dev/null 2>&1 & echo $!"):match("%d+")
    local out = sh("sh tools/standin/run start --owner-pid " .. owner)
    local pid, prefix = out:match("pid: (%d+)"), out:match("prefix: (%S+)")
    assert.truthy(pid)
    assert.is_true(alive(pid))
    os.execute("kill " .. owner)
    local deadline = socket.gettime() + 4
    while alive(pid) and socket.gettime() < deadline do socket.sleep(0.1) end
    local still = alive(pid)
    if still then os.execute("kill " .. pid) end
    os.execute("rm -rf '" .. prefix .. "'")
    assert.is_false(still)
  end)
end)
