-- Issue 8 acceptance with real nginx: the example gateway (examples/openresty,
-- rewritten only for paths and port by support.gateway) with 2 workers sharing
-- one token through lua_shared_dict, in front of the Genesys stand-in with
-- 3-second tokens. Load comes from wrk (non-blocking, outside this process).
local cjson = require "cjson"
local socket = require "socket"
local nginx = require "support.nginx"
local gateway = require "support.gateway"
local standin = require "support.standin"

local LIFETIME = 3

local function status_of(g)
  local code, body = g:get("/status")
  assert.equal(200, code, body)
  return cjson.decode(body)
end

local function wait_until(fn, timeout, step)
  local deadline = socket.gettime() + timeout
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(step or 0.05)
  until socket.gettime() > deadline
  return nil
end

-- The example's log lines come through ngx.log: "[level] pid#...: *n [lua] ...: skewguard: message".
local function log_lines(g, level, message)
  local found = {}
  for line in g:log():gmatch("[^\n]+") do
    if line:find("[" .. level .. "]", 1, true) and line:find("skewguard: " .. message, 1, true) then
      found[#found + 1] = line
    end
  end
  return found
end


describe("OpenResty gateway example (2 workers, shared token)", function()
  local s, g
  setup(function()
    s = standin.start({ lifetime = LIFETIME, offset = 7.3 })
    g = gateway.start({ standin = s, workers = 2 })
    -- the renewal timers fetch the first token at worker start
    assert(wait_until(function() return s:counter("token_requests") >= 1 end, 5))
  end)
  teardown(function()
    if g then g:stop() end
    if s then s:stop() end
  end)

  it("forwards method, path, query and body with the token; ignores the caller's Authorization", function()
    local code, body = g:request("POST", "/api/v2/echo?x=1&y=two", '{"a":1}')
    assert.equal(200, code, body)
    local echo = cjson.decode(body)
    assert.equal("POST", echo.method)
    assert.equal("/api/v2/echo", echo.path)
    assert.equal("x=1&y=two", echo.query)
    assert.same({ a = 1 }, echo.body)
    -- a bogus Authorization from the caller is dropped, not forwarded (the stand-in
    -- would answer 401 bad.credentials to it)
    local c = socket.tcp()
    c:settimeout(10)
    assert(c:connect("127.0.0.1", g.port))
    c:send("GET /api/v2/tokens/me HTTP/1.0\r\nHost: x\r\nAuthorization: Bearer not-a-token\r\n\r\n")
    local raw = c:receive("*a")
    c:close()
    assert.matches("^HTTP/1%.1 200", raw)
    assert.equal(0, s:counter("api_401"))
  end)

  it("passes Genesys errors through with their status and correlation id", function()
    local code, body, headers = g:get("/api/v2/no/such/thing")
    assert.equal(404, code)
    assert.equal("not.found", cjson.decode(body).code)
    assert.matches("^%x+%-", headers["inin-correlation-id"])
  end)

  it("shows skew, token state by fingerprint and counters on /status, and no secret", function()
    local code, body = g:get("/status")
    assert.equal(200, code)
    local st = cjson.decode(body)
    assert.is_true(math.abs(st.skew.seconds + 7.3) <= st.skew.uncertainty + 0.01,
      ("skew %g ± %g"):format(st.skew.seconds, st.skew.uncertainty))
    assert.matches("^%x%x%x%x%x%x%x%x$", st.token.fingerprint)
    assert.equal(LIFETIME, st.token.lifetime)
    assert.is_number(st.client.token_requests)
    assert.is_number(st.client.store_adoptions)
    assert.is_number(st.gateway.forwarded)
    assert.is_true(st.renewal_timer.running)
    assert.is_nil(body:find(s.client_secret, 1, true))
    assert.is_nil(body:find("access_token", 1, true))
  end)

  it("writes skewguard warnings to the error log at [warn] through ngx.log", function()
    s:control({ token = { kind = "status", status = 503, count = 1 } })
    assert(wait_until(function() return #log_lines(g, "warn", "token endpoint refused") > 0 end, 5),
      "no [warn] line for the refused renewal")
    local line = log_lines(g, "warn", "token endpoint refused")[1]
    assert.matches("status=503", line, 1, true)
    assert.is_nil(line:find(s.client_secret, 1, true))
    assert.is_true(#log_lines(g, "info", "token stored") >= 1)
    s:control({ token = false })
  end)

  it("200 clients for 15 s: no 401 reaches them; one token request per renewal period", function()
    -- windows of a 3 s token (docs/token.md): mandatory min(60, 3/2) = 1.5 s,
    -- advisory 1.5 + 0.3 x (1 - 0.2 U) <= 1.8 s before expiry: no token is renewed
    -- before it is 1.2 s old, and renewals across all workers are >= 1.2 s apart.
    local period = LIFETIME - 1.8
    s:control({ reset_counters = true })
    local t0 = socket.gettime()
    local statuses, errs, out = gateway.wrk(g.port, 200, 15)
    local elapsed = socket.gettime() - t0
    local counters = s:counters()
    local ok = statuses[200] or 0
    assert.is_true(ok > 1000, out)
    for code, n in pairs(statuses) do
      assert.equal(200, code, ("%d responses with status %d\n%s"):format(n, code, out))
    end
    assert.equal(0, errs.timeout, out)
    assert.equal(0, counters.api_401 or 0)
    -- the stand-in also answered the requests still in flight when wrk stopped
    -- counting (at most one per connection)
    assert.is_true(counters.api_ok >= ok and counters.api_ok <= ok + 200, out)
    local minted = counters.token_requests or 0
    -- at most one renewal per period across both workers (+1: a renewal that
    -- began just before the counters were reset); at least one per lifetime
    local most = math.ceil(elapsed / period) + 1
    assert.is_true(minted <= most, ("%d token requests in %.1f s, bound %d"):format(minted, elapsed, most))
    assert.is_true(minted >= math.floor(elapsed / LIFETIME), ("%d token requests in %.1f s"):format(minted, elapsed))
    assert.equal(minted, counters.issued_client_credentials)
    print(("\n    load: %d x 200 in %.1f s, %d token requests (bound %d), 0 x 401"):format(ok, elapsed, minted, most))
  end)

  it("a worker killed while holding the renewal lock: another renews after the lock expires", function()
    -- the next token request hangs far longer than the request timeout (2 s)
    local before = status_of(g).token.generation
    assert.is_number(before)
    s:control({ reset_counters = true, token = { kind = "hang", seconds = 30, count = 1 } })
    local holder = wait_until(function() return status_of(g).store.renewal_lock_pid end, 5, 0.02)
    assert.is_number(holder, "no worker took the renewal lock")
    holder = math.floor(holder)
    local workers = g:worker_pids()
    local found = false
    for _, pid in ipairs(workers) do found = found or tonumber(pid) == holder end
    assert.is_true(found, "lock holder " .. holder .. " is not a worker of this nginx")
    assert(nginx.run(("kill -9 %d"):format(holder)))
    local t_kill = socket.gettime()
    -- requests after the kill: all succeed, while the token runs out and the dead
    -- worker's lock (lock_ttl = timeout + 2 = 4 s) has to expire first
    local codes = {}
    while socket.gettime() - t_kill < 6 do
      local results = nginx.concurrent_get(g.port, "/api/v2/organizations/me", 10)
      for _, r in ipairs(results) do codes[#codes + 1] = r.status or 0 end
      socket.sleep(0.1)
    end
    for _, c in ipairs(codes) do assert.equal(200, c) end
    assert.is_true(#codes >= 50)
    -- the hung request, then the takeover (and ordinary renewals afterwards)
    assert.is_true(s:counter("token_requests") >= 2)
    assert.equal(0, s:counter("api_401"))
    assert.is_true(#log_lines(g, "warn", "took over the token renewal") >= 1, "no takeover logged")
    local now_workers = g:worker_pids()
    assert.equal(2, #now_workers)
    for _, pid in ipairs(now_workers) do assert.not_equal(holder, tonumber(pid)) end
  end)
end)

describe("OpenResty gateway with one worker: the client path does not block", function()
  local s, g
  setup(function()
    s = standin.start({ lifetime = 60 })
    g = gateway.start({ standin = s, workers = 1 })
    assert(wait_until(function() return s:counter("token_requests") >= 1 end, 5))
  end)
  teardown(function()
    if g then g:stop() end
    if s then s:stop() end
  end)

  it("20 requests that each wait 0.5 s at the API finish together", function()
    s:control({ api = { kind = "hang", seconds = 0.5, count = 0 } })
    local results, elapsed = nginx.concurrent_get(g.port, "/api/v2/organizations/me", 20)
    s:control({ api = false })
    for i = 1, 20 do assert.equal(200, results[i] and results[i].status) end
    -- serialised would be 20 x 0.5 = 10 s
    assert.is_true(elapsed < 1.5, ("took %.2f s"):format(elapsed))
  end)
end)

describe("SNTP over ngx.socket.udp inside a request handler", function()
  local responder = require "support.sntp_server"
  local ntp, srv
  setup(function()
    ntp = responder.start()
    ntp:set({ offset = 7.3 })
    srv = nginx.start({
      workers = 1,
      http = function(ctx)
        return ([[
          server {
            listen 127.0.0.1:%d;
            location = /sntp {
              content_by_lua_block {
                local sntp = require "skewguard.sntp"
                local r, err = sntp.query({ "127.0.0.1" }, { port = tonumber(ngx.var.arg_port), samples = 2 })
                ngx.say(require("cjson").encode(r and { skew = r.skew, uncertainty = r.uncertainty,
                  server = r.server } or { error = tostring(err) }))
              }
            }
          }]]):format(ctx.port[1])
      end,
    })
  end)
  teardown(function()
    if srv then srv:stop() end
    if ntp then ntp:stop() end
  end)

  it("returns the responder's offset as skew (transport picked automatically)", function()
    local code, body = srv:get("/sntp?port=" .. ntp.port)
    assert.equal(200, code)
    local r = cjson.decode(body)
    assert.is_nil(r.error, r.error)
    assert.equal("127.0.0.1", r.server)
    assert.is_true(math.abs(r.skew + 7.3) < 0.01, "skew " .. tostring(r.skew))
    assert.is_true(r.uncertainty < 0.01)
  end)
end)
