-- The token manager over the real libcurl transport, against a token endpoint
-- served by a loopback nginx with canned answers (the remote service is the only
-- thing stood in for). Every bad answer must leave the previous token in use.
local token = require "skewguard.token"
local curl = require "skewguard.transport.curl"
local nginx = require "support.loopback_nginx"

local SECRET = "pa:ss+w%rd&é"
local GOOD = "AT-good-opaque-0123456789"

local function json_location(path, status, body)
  return string.format("location = %s { default_type application/json; return %d '%s'; }\n",
    path, status, body)
end

local LOCATIONS = table.concat({
  json_location("/good", 200, '{"access_token":"' .. GOOD .. '","token_type":"bearer","expires_in":3600}'),
  json_location("/short", 200, '{"access_token":"AT-short-lived","token_type":"bearer","expires_in":2}'),
  json_location("/truncated", 200, '{"access_token":"AT-truncated","token_type":"bearer","expi'),
  json_location("/malformed", 200, '<html>oops</html>'),
  json_location("/array", 200, '[1,2,3]'),
  json_location("/missing", 200, '{"token_type":"bearer","expires_in":3600}'),
  json_location("/expired", 200, '{"access_token":"AT-expired","token_type":"bearer","expires_in":1e-9}'),
  json_location("/no_expiry", 200, '{"access_token":"AT-no-expiry","token_type":"bearer"}'),
  json_location("/rate", 400, '{"error":"invalid_request","description":"rate limit exceeded; retry",' ..
    '"error_description":"rate limit exceeded; retry in a moment"}'),
  json_location("/badclient", 401, '{"error":"invalid_client","error_description":"client authentication failed"}'),
  json_location("/grant", 400, '{"error":"unsupported_grant_type","error_description":"grant_type not supported"}'),
  json_location("/down", 503, '{"message":"service unavailable"}'),
  "location = /huge { default_type application/json; echo -n '{\"access_token\":\"';\n" ..
  "  echo_duplicate 900000 'AAAAAAAAAA'; echo '\"}'; }\n",
})

describe("token manager against canned token-endpoint answers", function()
  local server, logs
  setup(function()
    server = nginx.start({ locations = LOCATIONS })
  end)
  teardown(function() if server then server.stop() end end)

  local function manager(path, opts)
    logs = {}
    local o = { client_id = "client-1", client_secret = SECRET, token_url = server.url .. path,
      transport = curl.new({ timeout = 5 }),
      logger = function(level, message, fields) logs[#logs + 1] = { level, message, fields } end,
      log_level = "debug" }
    for k, v in pairs(opts or {}) do o[k] = v end
    return token.new(o)
  end

  local function all_logs()
    local out = {}
    for _, l in ipairs(logs) do
      local parts = { l[1], l[2] }
      for k, v in pairs(l[3] or {}) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(v) end
      out[#out + 1] = table.concat(parts, " ")
    end
    return table.concat(out, "\n")
  end

  it("logs in with client credentials and serves the token while fresh", function()
    local tm = manager("/good")
    local access, gen, fp = tm:get()
    assert.equal(GOOD, access)
    assert.equal(1, gen)
    assert.truthy(fp:match("^%x%x%x%x%x%x%x%x$"))
    assert.equal(GOOD, (tm:get()))
    assert.equal(1, tm:stats().token_requests)
    local state, left = tm:state()
    assert.equal("fresh", state)
    assert.is_true(left > 3590 and left <= 3600)
    tm:close()
  end)

  local failures = {
    { "/truncated", "protocol", "malformed or truncated" },
    { "/malformed", "protocol", "malformed or truncated" },
    { "/array", "token", "no access_token" },
    { "/missing", "token", "no access_token" },
    { "/expired", "token", "already expired" },
    { "/no_expiry", "token", "no expires_in" },
    { "/rate", "rate_limited", "rate limit exceeded" },
    { "/badclient", "unauthorized", "client authentication failed" },
    { "/grant", "config", "grant_type not supported" },
    { "/down", "unavailable", "HTTP 503" },
    { "/huge", "too_large", "byte limit" },
  }
  for _, case in ipairs(failures) do
    local path, kind, text = case[1], case[2], case[3]
    it("turns " .. path:sub(2) .. " into kind " .. kind .. " and keeps the previous token", function()
      local tm = manager("/good")
      local access, gen = tm:get()
      assert.equal(GOOD, access)
      tm.token_url = server.url .. path
      local ok, err = tm:refresh()
      assert.is_nil(ok)
      assert.equal(kind, err.kind)
      assert.truthy(tostring(err):find(text, 1, true), tostring(err))
      local again, gen2 = tm:get()
      assert.equal(GOOD, again)
      assert.equal(gen, gen2)
      assert.equal(2, tm:stats().token_requests)
      assert.equal(1, tm:stats().token_failures)
      for _, s in ipairs({ tostring(err), all_logs() }) do
        assert.is_nil(s:find(GOOD, 1, true))
        assert.is_nil(s:find("AT-", 1, true))
        assert.is_nil(s:find("pa:ss", 1, true))
        assert.is_nil(s:find("cGE6c3M", 1, true)) -- base64 of the start of the secret
      end
      tm:close()
    end)
  end

  it("fails with nothing to fall back on when the first login fails", function()
    local tm = manager("/down")
    local access, err = tm:get()
    assert.is_nil(access)
    assert.equal("unavailable", err.kind)
    assert.equal("empty", (tm:state()))
    tm:close()
  end)

  it("keeps the token through failed advisory and mandatory renewals, then fails once expired", function()
    -- a 2 s token: mandatory window 1 s (half the lifetime), advisory about 1.16-1.2 s
    local tm = manager("/short", { retry_advisory_after = 10 })
    assert.equal("AT-short-lived", (tm:get()))
    local info = tm:info()
    assert.near(1, info.mandatory, 1e-6)
    assert.is_true(info.advisory > 1.15 and info.advisory <= 1.2)
    tm.token_url = server.url .. "/down"
    tm.transport:sleep(info.deadline - tm.transport:now() - 1.1)
    assert.equal("advisory", (tm:state()))
    assert.equal("AT-short-lived", (tm:get()))
    assert.equal(1, tm:stats().advisory_failures)
    assert.equal("AT-short-lived", (tm:get()), "no second attempt before retry_advisory_after")
    assert.equal(2, tm:stats().token_requests)
    tm.transport:sleep(info.deadline - tm.transport:now() - 0.6)
    assert.equal("mandatory", (tm:state()))
    assert.equal("AT-short-lived", (tm:get()))
    assert.equal(3, tm:stats().token_requests)
    tm.transport:sleep(info.deadline - tm.transport:now() + 0.01)
    local access, err = tm:get()
    assert.is_nil(access)
    assert.equal("unavailable", err.kind)
    tm.token_url = server.url .. "/good"
    assert.equal(GOOD, (tm:get()))
    tm:close()
  end)

  it("raises on bad options", function()
    assert.has_error(function() token.new({ client_id = "x", client_secret = "y" }) end)
    assert.has_error(function() token.new({ client_id = "x", token_url = "http://h/oauth/token" }) end)
    assert.has_error(function()
      token.new({ grant = "pkce", client_id = "x", client_secret = "y", token_url = "http://h/oauth/token" })
    end)
    assert.has_error(function()
      token.new({ client_id = "x", client_secret = "y", token_url = "http://h/", bufer = 3 })
    end)
  end)
end)
