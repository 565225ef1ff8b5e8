-- Secrets audit: every fault scenario of the client (spec/40) and the token
-- manager's grants, run against the stand-in with DEBUG logging captured. No
-- configured client secret, no token or code the stand-in issued (it lists them:
-- GET /__standin/issued) and no PKCE verifier may appear in a log message or
-- field, in any error (tostring, message, every field, the response it carries),
-- in tostring of the client's objects, or anywhere in the Lua tables reachable
-- from the client (secrets live in C memory only). Tokens show up by fingerprint.
local standin = require "support.standin"
local genesys = require "skewguard.genesys"
local core = require "skewguard.core"

-- A secret with a separator, form-encoding metacharacters and non-ASCII bytes, so
-- an encoding slip (raw, %-encoded or +-for-space) would show in the checks below.
local SECRET = "s3:cr+et%20&k=v é ü/"
local WRONG_SECRET = SECRET .. "-wrong"
local REDIRECT = "http://localhost/cb"

local function encode(s, space)
  return (s:gsub("[^%w%-._~]", function(c)
    if c == " " and space then return "+" end
    return string.format("%%%02X", c:byte())
  end))
end

-- The forms a secret could leak in: as is, form- or URL-encoded.
local function leak_forms(secret)
  return { secret, encode(secret, true), encode(secret, false) }
end

-- A Basic header's credential (RFC 6749 §2.3.1 form-encodes before base64), raw too.
local function basic_forms(id, secret)
  return { standin.base64(id .. ":" .. secret), standin.base64(encode(id, true) .. ":" .. encode(secret, true)) }
end

describe("secrets audit", function()
  local s

  setup(function() s = standin.start { lifetime = 3600, client_secret = SECRET } end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  -- One run: a client, its captured logs and the errors it returned.
  local function run(extra)
    local r = { logs = {}, errors = {}, secrets = { SECRET, WRONG_SECRET }, clients = {} }
    for _, secret in ipairs({ SECRET, WRONG_SECRET }) do
      for _, form in ipairs(basic_forms(s.client_id, secret)) do r.secrets[#r.secrets + 1] = form end
    end
    function r.client(opts)
      local o = { login_url = s.url, client_id = s.client_id, client_secret = SECRET, timeout = 3,
        backoff_base = 0.05, log_level = "debug",
        logger = function(level, message, fields) r.logs[#r.logs + 1] = { level, message, fields or {} } end }
      for k, v in pairs(extra or {}) do o[k] = v end
      for k, v in pairs(opts or {}) do o[k] = v end
      if o.client_secret == false then o.client_secret = nil end
      local c = genesys.new(o)
      r.clients[#r.clients + 1] = c
      return c
    end
    function r.check(ok, err)
      if err ~= nil then r.errors[#r.errors + 1] = err end
      return ok, err
    end
    return r
  end

  -- Every string reachable from v through tables (keys too), with its path.
  local function strings(v, path, out, seen)
    out, seen = out or {}, seen or {}
    if type(v) == "string" then
      out[#out + 1] = { path, v }
    elseif type(v) == "table" and not seen[v] then
      seen[v] = true
      for k, x in pairs(v) do
        strings(k, path .. "[key]", out, seen)
        strings(x, path .. "." .. tostring(k), out, seen)
      end
      local mt = getmetatable(v)
      if type(mt) == "table" then strings(mt, path .. "<mt>", out, seen) end
    end
    return out
  end

  local function assert_clean(where, text, secrets)
    for _, secret in ipairs(secrets) do
      for _, form in ipairs(leak_forms(secret)) do
        assert.is_nil(text:find(form, 1, true), where .. " contains a secret")
      end
    end
  end

  -- The audit itself, after a scenario: returns the issued tokens.
  local function audit(r)
    local issued = s:issued()
    local secrets = {}
    for _, x in ipairs(r.secrets) do secrets[#secrets + 1] = x end
    for _, list in ipairs({ issued.access_tokens, issued.refresh_tokens, issued.codes }) do
      for _, x in ipairs(list) do secrets[#secrets + 1] = x end
    end
    assert.is_true(#r.logs > 0, "logs were captured")
    for i, entry in ipairs(r.logs) do
      assert_clean("log message " .. i, entry[2], secrets)
      for _, item in ipairs(strings(entry[3], "fields")) do
        assert_clean("log " .. i .. " " .. item[1], item[2], secrets)
      end
      for k, v in pairs(entry[3]) do
        assert_clean("log " .. i .. " field " .. tostring(k), tostring(v), secrets)
      end
    end
    for i, err in ipairs(r.errors) do
      assert_clean("error " .. i .. " tostring", tostring(err), secrets)
      for _, item in ipairs(strings(err, "err")) do
        assert_clean("error " .. i .. " " .. item[1], item[2], secrets)
      end
    end
    for i, c in ipairs(r.clients) do
      for name, obj in pairs({ client = c, tokens = c.tokens, token = c.tokens.tok, transport = c.transport,
        http = c.transport.http, estimator = c.estimator }) do
        assert_clean("tostring(" .. name .. ") of client " .. i, tostring(obj), secrets)
      end
      for _, item in ipairs(strings(c, "client")) do
        assert_clean("client " .. i .. " " .. item[1], item[2], secrets)
      end
    end
    -- Tokens are told apart by fingerprint: every access token this run stored is in the logs by it.
    local logged = {}
    for _, entry in ipairs(r.logs) do
      if entry[3].fingerprint then logged[entry[3].fingerprint] = true end
    end
    for _, token in ipairs(issued.access_tokens) do
      assert.is_true(logged[core.fingerprint(token)] == true, "the fingerprint of an issued token is logged")
    end
    for _, c in ipairs(r.clients) do c:close() end
    return issued
  end

  it("scenario: tokens expiring during a run of requests", function()
    s:control { lifetime = 1 }
    local r = run()
    local c = r.client()
    local t0 = core.monotonic()
    while core.monotonic() - t0 < 2.2 do
      assert.truthy(r.check(c:get("/api/v2/organizations/me")))
      core.sleep(0.1)
    end
    local issued = audit(r)
    assert.is_true(#issued.access_tokens >= 2, "renewed across lifetimes")
  end)

  it("scenario: revocation mid-run", function()
    local r = run()
    local c = r.client()
    assert.truthy(r.check(c:get("/api/v2/organizations/me")))
    s:control { revoke_all = true }
    assert.truthy(r.check(c:get("/api/v2/organizations/me")))
    assert.equal(1, s:counter("api_401_revoked"))
    assert.equal(2, #audit(r).access_tokens)
  end)

  it("scenario: every call 401, with and without a clock offset", function()
    local r = run()
    s:control { api_401_all = true }
    local _, err = r.check(r.client():get("/api/v2/organizations/me"))
    assert.equal("unauthorized", err.kind)
    s:control { offset = 400 }
    _, err = r.check(r.client():get("/api/v2/organizations/me"))
    assert.equal("clock_skew", err.kind)
    assert.equal(4, #audit(r).access_tokens)
  end)

  it("scenario: 403, 429 with Retry-After 1, API 503 on GET and POST", function()
    local r = run()
    local c = r.client()
    s:control { api = { kind = "forbidden" } }
    local _, err = r.check(c:get("/api/v2/organizations/me"))
    assert.equal("forbidden", err.kind)
    s:control { api = { kind = "rate_limit", retry_after = 1, count = 1 } }
    assert.truthy(r.check(c:get("/api/v2/organizations/me")))
    s:control { api = { kind = "rate_limit", retry_after = 1000 } }
    _, err = r.check(c:get("/api/v2/organizations/me"))
    assert.equal("rate_limited", err.kind)
    s:control { api = { kind = "status", status = 503, count = 1 } }
    assert.truthy(r.check(c:get("/api/v2/organizations/me")))
    s:control { api = { kind = "status", status = 503, count = 1 } }
    _, err = r.check(c:post("/api/v2/echo", { hello = "world" }))
    assert.equal(503, err.status)
    assert.equal(2, s:counter("api_429"))
    audit(r)
  end)

  it("scenario: token endpoint rate-limited, then 503 until it gives up", function()
    local r = run()
    s:control { token = { kind = "rate_limit", count = 1 } }
    assert.truthy(r.check(r.client():get("/api/v2/organizations/me")))
    s:control { token = { kind = "status", status = 503, count = 0 } }
    local _, err = r.check(r.client({ max_retries = 1 }):get("/api/v2/organizations/me"))
    assert.equal("unavailable", err.kind)
    assert.equal(1, s:counter("token_rate_limited"))
    audit(r)
  end)

  it("scenario: hang, malformed, truncated and huge bodies", function()
    local r = run()
    local c = r.client({ timeout = 1 })
    assert.truthy(r.check(c:login()))
    s:control { api = { kind = "hang", seconds = 2 } }
    local _, err = r.check(c:get("/api/v2/organizations/me"))
    assert.equal("timeout", err.kind)
    s:control { api = { kind = "malformed" } }
    local res = assert(r.check(c:get("/api/v2/organizations/me")))
    _, err = r.check(res:json())
    assert.equal("protocol", err.kind)
    s:control { api = { kind = "truncated", mode = "cut" } }
    res = assert(r.check(c:get("/api/v2/organizations/me")))
    _, err = r.check(res:json())
    assert.equal("protocol", err.kind)
    s:control { api = { kind = "truncated", mode = "short" } }
    _, err = r.check(c:post("/api/v2/echo", { x = 1 })) -- a POST is not retried
    assert.equal("network", err.kind)
    s:control { api = { kind = "huge", size = 9 * 1024 * 1024 } }
    _, err = r.check(c:get("/api/v2/organizations/me"))
    assert.equal("too_large", err.kind)
    audit(r)
  end)

  it("token manager: bad credentials", function()
    local r = run()
    local _, err = r.check(r.client({ client_secret = WRONG_SECRET }):get("/api/v2/organizations/me"))
    assert.equal("unauthorized", err.kind)
    assert.equal(1, s:counter("token_invalid_client"))
    assert.equal(0, #audit(r).access_tokens)
  end)

  local function code_for(query)
    local status, headers = s:request { path = "/oauth/authorize?response_type=code&" .. query }
    assert.equal(302, status)
    return headers.location:match("code=([%w_-]+)")
  end

  it("token manager: authorization code with refresh-token rotation and a revocation", function()
    local r = run()
    local c = r.client({ grant = "authorization_code" })
    local code = code_for("client_id=" .. s.client_id .. "&redirect_uri=http%3A%2F%2Flocalhost%2Fcb")
    assert.truthy(r.check(c:login({ code = code, redirect_uri = REDIRECT })))
    assert.truthy(r.check(c:get("/api/v2/organizations/me")))
    assert.truthy(r.check(c.tokens:refresh()))
    assert.truthy(r.check(c.tokens:refresh()))
    s:control { revoke_all = true } -- the refresh token dies too: the 401 renewal fails
    local _, err = r.check(c:get("/api/v2/organizations/me"))
    assert.equal("unauthorized", err.kind)
    local issued = audit(r)
    assert.equal(3, #issued.refresh_tokens)
    assert.equal(3, #issued.access_tokens)
  end)

  it("token manager: PKCE public client", function()
    local r = run()
    local verifier = core.pkce_verifier(64)
    r.secrets[#r.secrets + 1] = verifier
    local c = r.client({ grant = "pkce", client_id = "test-public-client", client_secret = false })
    local url = c:authorize_url({ redirect_uri = REDIRECT, code_challenge = core.pkce_challenge(verifier) })
    local code = code_for((url:match("%?(.*)$"):gsub("response_type=code&", "")))
    assert.truthy(r.check(c:login({ code = code, code_verifier = verifier, redirect_uri = REDIRECT })))
    assert.truthy(r.check(c:get("/api/v2/organizations/me")))
    -- without the user a PKCE token cannot be renewed: an error, not a leak
    s:control { revoke_all = true }
    local _, err = r.check(c:get("/api/v2/organizations/me"))
    assert.truthy(err)
    assert.equal(1, s:counter("token_pkce"))
    audit(r)
  end)
end)
