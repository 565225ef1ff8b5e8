-- The token manager end to end against the Genesys stand-in on loopback: every
-- grant, renewal before the server's deadline, refresh-token rotation, PKCE,
-- and HTTPS. API calls go through the raw transport so the stand-in's counters
-- judge the tokens, not our own bookkeeping.
local token = require "skewguard.token"
local curl = require "skewguard.transport.curl"
local standin = require "support.standin"
local cjson = require "cjson"
local core = require "skewguard.core"
local skew = require "skewguard.skew"

local SECRET = "pa:ss+w%rd&é"
local PUBLIC_CLIENT = "test-public-client"

-- A pass-through transport that remembers request bodies and answer bodies.
local function recording(inner)
  local rec = { requests = {}, answers = {} }
  local t = setmetatable({ rec = rec }, { __index = inner })
  function t.request(_, req)
    rec.requests[#rec.requests + 1] = req
    local res, err = inner:request(req)
    if res then rec.answers[#rec.answers + 1] = res.body end
    return res, err
  end
  return t
end

local function api_call(transport, s, access)
  local res = assert(transport:request({ url = s.url .. "/api/v2/tokens/me?preserveIdleTTL=true",
    headers = { Authorization = "Bearer " .. access } }))
  return res.status, res
end

-- PKCE verifier (43..128 of [A-Za-z0-9-._~]) and its S256 challenge, computed
-- with the openssl command so the check does not lean on our own code.
local function pkce_pair()
  local chars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"
  local v = {}
  for i = 1, 64 do
    local k = math.random(#chars)
    v[i] = chars:sub(k, k)
  end
  local verifier = table.concat(v)
  local p = io.popen("printf '%s' '" .. verifier .. "' | openssl dgst -sha256 -binary | openssl base64 -A")
  local challenge = p:read("*a"):gsub("=+$", ""):gsub("%+", "-"):gsub("/", "_")
  p:close()
  return verifier, challenge
end

describe("token manager against the stand-in", function()
  local s, transport
  setup(function()
    s = standin.start({ client_secret = SECRET })
    transport = curl.new({ timeout = 5 })
  end)
  teardown(function()
    if transport then transport:close() end
    if s then s:stop() end
  end)
  before_each(function()
    s:control({ offset = 0, jwt = false, lifetime = 86400, reset_counters = true })
  end)

  local function manager(opts)
    local o = { client_id = "test-client", client_secret = SECRET, token_url = s.url .. "/oauth/token",
      transport = curl.new({ timeout = 5 }) }
    for k, v in pairs(opts or {}) do o[k] = v end
    return token.new(o)
  end

  it("logs in with client credentials and renews by asking again before the deadline", function()
    s:control({ lifetime = 1 })
    local tm = manager()
    local seen, calls = {}, 0
    local stop_at = transport:now() + 2.2
    while transport:now() < stop_at do
      local access, gen = assert(tm:get())
      seen[gen] = true
      assert.equal(200, (api_call(transport, s, access)))
      calls = calls + 1
      transport:sleep(0.05)
    end
    local c = s:counters()
    assert.equal(0, c.api_401 or 0)
    assert.equal(calls, c.api_ok)
    assert.is_false(tm.tok:has_refresh_token(), "client credentials bring no refresh token")
    local renewals = tm:stats().renewals
    -- 1 s tokens, renewed on entering the advisory window (0.58-0.6 s before
    -- expiry): a new token about every 0.42 s
    assert.is_true(renewals >= 4 and renewals <= 8, "renewals " .. renewals)
    assert.equal(renewals, c.token_grant_client_credentials)
    local used = 0
    for _ in pairs(seen) do used = used + 1 end
    assert.equal(renewals, used, "every token obtained was used")
    tm:close()
  end)

  it("rotates refresh tokens with the authorization-code grant and never reuses one", function()
    s:control({ lifetime = 3600 })
    local rt = recording(curl.new({ timeout = 5 }))
    local tm = manager({ grant = "authorization_code", transport = rt })
    local redirect = "http://127.0.0.1:9/callback"
    local url = tm:authorize_url({ redirect_uri = redirect, state = "st 1" })
    local res = assert(transport:request({ url = url }))
    assert.equal(302, res.status)
    local code = res.headers.location:match("[?&]code=([^&]+)")
    assert.truthy(code)
    assert.truthy(res.headers.location:find("state=st%201", 1, true))
    assert(tm:login({ code = code, redirect_uri = redirect }))
    for _ = 1, 4 do assert(tm:refresh()) end
    local used, issued = {}, {}
    for i, req in ipairs(rt.rec.requests) do
      issued[i] = cjson.decode(rt.rec.answers[i]).refresh_token
      assert.truthy(issued[i])
      if i > 1 then
        local sent = req.body:match("refresh_token=([^&]+)")
        assert.equal(issued[i - 1], sent, "each refresh uses the newest refresh token")
        assert.is_nil(used[sent], "a refresh token is used once")
        used[sent] = true
      end
    end
    local c = s:counters()
    assert.equal(4, c.issued_refresh_token)
    assert.equal(0, c.token_invalid_grant or 0)
    local access = tm:get()
    assert.equal(200, (api_call(transport, s, access)))
    -- rotation is real: the stand-in refuses a refresh token that was already used
    local old = rt.rec.requests[2].body
    local _, headers = tm.tok:refresh_request()
    res = assert(transport:request({ method = "POST", url = s.url .. "/oauth/token", body = old, headers = headers }))
    assert.equal(400, res.status)
    tm:close()
  end)

  it("exchanges a PKCE code without a secret, from an exactly built authorize URL", function()
    local verifier, challenge = pkce_pair()
    local rt = recording(curl.new({ timeout = 5 }))
    local tm = token.new({ grant = "pkce", client_id = PUBLIC_CLIENT, token_url = s.url .. "/oauth/token",
      transport = rt })
    local redirect = "http://localhost:8085/callback"
    local url = tm:authorize_url({ redirect_uri = redirect, code_challenge = challenge, state = "a b&c",
      org = "my org", provider = "okta", prompt = "login" })
    assert.equal(s.url .. "/oauth/authorize?response_type=code&client_id=" .. PUBLIC_CLIENT ..
      "&redirect_uri=http%3A%2F%2Flocalhost%3A8085%2Fcallback&code_challenge=" .. challenge ..
      "&code_challenge_method=S256&state=a%20b%26c&org=my%20org&provider=okta&prompt=login", url)
    local res = assert(transport:request({ url = url }))
    assert.equal(302, res.status)
    local code = res.headers.location:match("[?&]code=([^&]+)")
    assert.truthy(res.headers.location:find("state=a%20b%26c", 1, true))
    assert(tm:login({ code = code, code_verifier = verifier, redirect_uri = redirect }))
    local sent = rt.rec.requests[1]
    assert.is_nil(sent.headers.Authorization)
    assert.truthy(sent.body:find("code_verifier=" .. verifier, 1, true))
    local access = assert(tm:get())
    assert.equal(200, (api_call(transport, s, access)))
    assert.equal(1, s:counters().token_pkce)
    -- a wrong verifier is refused: typed error, the token stays
    res = assert(transport:request({ url = url }))
    code = res.headers.location:match("[?&]code=([^&]+)")
    local ok, err = tm:login({ code = code, code_verifier = pkce_pair(), redirect_uri = redirect })
    assert.is_nil(ok)
    assert.equal("unauthorized", err.kind)
    assert.equal("invalid_grant", err.code)
    assert.equal(access, (tm:get()))
    tm:close()
  end)

  it("keeps the previous token when the token endpoint fails, is rate limited or answers garbage", function()
    local tm = manager()
    local access = assert(tm:get())
    for _, scenario in ipairs({
      { { kind = "status", status = 503, count = 1 }, "unavailable" },
      { { kind = "rate_limit", count = 1 }, "rate_limited" },
      { { kind = "malformed", count = 1 }, "protocol" },
    }) do
      s:control({ token = scenario[1] })
      local ok, err = tm:refresh()
      assert.is_nil(ok)
      assert.equal(scenario[2], err.kind)
      assert.equal(access, (tm:get()))
    end
    assert.equal(200, (api_call(transport, s, access)))
    tm:close()
  end)
end)

describe("token manager with JWTs and skewed clocks", function()
  local s, transport
  setup(function()
    s = standin.start({ client_secret = SECRET, jwt = true })
    transport = curl.new({ timeout = 5 })
  end)
  teardown(function()
    if transport then transport:close() end
    if s then s:stop() end
  end)
  before_each(function() s:control({ offset = 0, jwt = true, lifetime = 86400, reset_counters = true }) end)

  local function manager(opts)
    local o = { client_id = "test-client", client_secret = SECRET, token_url = s.url .. "/oauth/token",
      transport = curl.new({ timeout = 5 }) }
    for k, v in pairs(opts or {}) do o[k] = v end
    return token.new(o)
  end

  local function observe(est, res)
    est:observe_date(res.headers.date, res.t_send_wall, res.t_recv_wall, "date")
  end

  it("renews before the server expires the token when the server's clock is 300 s ahead", function()
    -- A tiny buffer and no advisory window: only the JWT exp, converted through
    -- the skew interval, keeps the token from outliving the server's exp (the
    -- stand-in's exp is its issue second + lifetime, up to 1 s before
    -- t_send + expires_in).
    s:control({ offset = 300, lifetime = 2 })
    local est = skew.new()
    local tm = manager({ estimator = est, buffer = 0.1, advisory_fraction = 0, jitter = 0 })
    local calls, gens = 0, {}
    local stop_at = transport:now() + 3
    while transport:now() < stop_at do
      local access, gen = assert(tm:get())
      gens[gen] = true
      local status, res = api_call(transport, s, access)
      assert.equal(200, status)
      observe(est, res)
      calls = calls + 1
      transport:sleep(0.02)
    end
    local c = s:counters()
    assert.equal(0, c.api_401_expired or 0)
    assert.equal(0, c.api_401 or 0)
    assert.is_true(tm:stats().renewals >= 3, "renewals " .. tm:stats().renewals)
    assert.is_true(tm:stats().iat_samples >= 3)
    local used = 0
    for _ in pairs(gens) do used = used + 1 end
    assert.equal(tm:stats().renewals, used)
    local info = tm:info()
    assert.truthy(info.exp, "the JWT's exp was read")
    assert.is_true(info.deadline - info.issued < 2, "exp made the deadline earlier than expires_in")
    assert.near(-300, est:skew(), 0.6)
    tm:close()
  end)

  it("uses a fresh JWT at once when the server's clock is 300 s behind", function()
    s:control({ offset = -300, lifetime = 60 })
    local est = skew.new()
    local tm = manager({ estimator = est })
    assert(tm:login())
    local state = tm:state()
    assert.equal("fresh", state)
    local access = assert(tm:get())
    assert.equal(200, (api_call(transport, s, access)))
    assert.is_true(tm:info().valid_from <= transport:now())
    assert.near(300, est:skew(), 0.6)
    assert.equal(1, s:counters().token_requests)
    tm:close()
  end)

  it("does not move the deadline when the local wall clock jumps", function()
    s:control({ lifetime = 3 })
    local shift = 0
    local inner = curl.new({ timeout = 5 })
    -- the wall clock as this process sees it, injected: the transport's wall
    -- readings and the estimator's clock jump together, as after a clock step
    local shifted = setmetatable({}, { __index = inner })
    function shifted.request(_, req)
      local res, err = inner:request(req)
      if res then
        for _, k in ipairs({ "t_start_wall", "t_send_wall", "t_recv_wall" }) do res[k] = res[k] + shift end
      end
      return res, err
    end
    function shifted.wall() return core.wall() + shift end
    local est = skew.new({ wall = function() return core.wall() + shift end })
    local tm = manager({ transport = shifted, estimator = est })
    local access, gen = assert(tm:get())
    local deadline = tm:info().deadline
    for _, jump in ipairs({ 3600, -3600, 0.75 }) do
      shift = jump
      local status, res = api_call(shifted, s, access)
      assert.equal(200, status)
      observe(est, res)
      local again, gen2 = assert(tm:get())
      assert.equal(access, again)
      assert.equal(gen, gen2)
      assert.equal(deadline, tm:info().deadline)
      assert.equal("fresh", (tm:state()))
    end
    assert.is_true(est:steps() >= 1, "the estimator saw the step")
    -- a token taken after the jump gets a deadline from its own send time
    shift = 3600
    assert(tm:refresh())
    local info = tm:info()
    -- exp (issue second + 3) through an interval of up to ~1 s: between 1 and 3 s
    -- after sending, not 3600 s off
    assert.is_true(info.deadline - info.issued > 0.9 and info.deadline - info.issued <= 3,
      info.deadline - info.issued)
    -- and tokens still renew on time: wait into the advisory window
    transport:sleep(info.deadline - info.advisory + 0.05 - transport:now())
    local _, gen3 = assert(tm:get())
    assert.is_true(gen3 > gen + 1)
    assert.equal(0, s:counters().api_401 or 0)
    tm:close()
    inner:close()
  end)
end)

describe("single flight within the process", function()
  local s
  setup(function() s = standin.start({}) end)
  teardown(function() if s then s:stop() end end)

  it("lets one coroutine renew while the others wait for its token", function()
    local inner = curl.new({ timeout = 5 })
    -- a transport that yields like a cosocket: other coroutines run meanwhile
    local yielding = setmetatable({}, { __index = inner })
    function yielding.request(_, req)
      coroutine.yield()
      return inner:request(req)
    end
    function yielding.sleep() coroutine.yield() end
    local tm = token.new({ client_id = "test-client", client_secret = "test-secret",
      token_url = s.url .. "/oauth/token", transport = yielding })
    local results, cos = {}, {}
    for i = 1, 5 do cos[i] = coroutine.create(function() results[i] = { tm:get() } end) end
    repeat
      local alive = false
      for _, co in ipairs(cos) do
        if coroutine.status(co) ~= "dead" then
          alive = true
          assert(coroutine.resume(co))
        end
      end
    until not alive
    for i = 1, 5 do
      assert.truthy(results[i][1])
      assert.equal(results[1][1], results[i][1])
    end
    assert.equal(1, s:counters().token_requests)
    assert.equal(4, tm:stats().refresh_waits)
    tm:close()
    inner:close()
  end)
end)

describe("token manager over HTTPS to the stand-in", function()
  local s
  setup(function() s = standin.start({ tls = true }) end)
  teardown(function() if s then s:stop() end end)

  it("fails with kind tls against a self-signed certificate by default", function()
    local tm = token.new({ client_id = "test-client", client_secret = "test-secret",
      token_url = s.url .. "/oauth/token" })
    local access, err = tm:get()
    assert.is_nil(access)
    assert.equal("tls", err.kind)
    tm:close()
  end)

  it("succeeds with ca_file", function()
    local tm = token.new({ client_id = "test-client", client_secret = "test-secret",
      token_url = s.url .. "/oauth/token", ca_file = s.ca_file })
    local access = assert(tm:get())
    local t = curl.new({ ca_file = s.ca_file })
    assert.equal(200, (api_call(t, s, access)))
    t:close()
    tm:close()
  end)
end)
