-- Issue 10 acceptance in nginx: the example gateway (examples/openresty, 2 workers) with
-- SKEWGUARD_REDIS set, plus one script host (spec/support/fleet_host.lua) whose clock is
-- 300 s ahead, share one credential through a real redis-server, against the stand-in
-- with 6 s tokens. Load on the gateway comes from wrk. The bound on token requests is
-- the one of spec/64-fleet_spec.lua (renewals >= 2 s apart for a 6 s token); the two
-- workers and the script renewing on their own would need about three times as many.
local cjson = require "cjson"
local core = require "skewguard.core"
local gateway = require "support.gateway"
local standin = require "support.standin"
local redis_server = require "support.redis_server"
local fleet = require "support.fleet"

local LIFETIME = 6
local MIN_PERIOD = 2


describe("fleet in nginx: gateway (2 workers) and a script sharing one token through Redis", function()
  local rs, s, g, f

  setup(function()
    rs = redis_server.start({})
    s = standin.start({ lifetime = LIFETIME })
    g = gateway.start({ standin = s, workers = 2, env = { SKEWGUARD_REDIS = "127.0.0.1:" .. rs.port } })
    f = fleet.new()
  end)
  teardown(function()
    if f then f:cleanup() end
    if g then g:stop() end
    if s then s:stop() end
    if rs then rs:destroy() end
  end)

  it("one token request per renewal period, no 401, no failed request", function()
    local duration = 12
    local group = f:launch({ standin = s, redis_port = rs.port, hosts = { { name = "script", offset = 300 } },
      duration = duration, lock_ttl = 1.5 })
    fleet.sleep_until(group.start_at)
    s:control({ reset_counters = true })
    local t0 = core.monotonic()
    local statuses, errs, out = gateway.wrk(g.port, 4, duration, 1)
    local reports = f:wait(group)
    local counters = s:counters()
    local window = core.monotonic() - t0
    assert.is_true((statuses[200] or 0) > 200, out)
    for code, n in pairs(statuses) do
      assert.equal(200, code, ("%d responses with status %d\n%s"):format(n, code, out))
    end
    assert.equal(0, errs.timeout, out)
    local r = reports[1]
    assert.equal(0, r.failed, cjson.encode(r.errors) .. "\n" .. f:log(group[1]))
    assert.is_true(r.requests > 100)
    assert.is_true(math.abs(r.skew - 300) < 0.5, "script skew " .. tostring(r.skew))
    assert.equal(0, counters.api_401 or 0)
    -- the gateway's workers run through Redis, not the shared dict
    local code, body = g:get("/status")
    assert.equal(200, code, body)
    local st = cjson.decode(body)
    assert.equal("127.0.0.1:" .. rs.port, st.store.redis)
    assert.equal(0, st.client.store_errors)
    -- one token for all: the script used tokens the gateway minted, and the other way round
    local minted = counters.token_requests or 0
    local bound = math.floor(window / MIN_PERIOD) + 1
    assert.is_true(minted <= bound, ("%d token requests in %.1f s > %d"):format(minted, window, bound)
      .. "\n" .. f:log(group[1]) .. "\n" .. g:log():gsub("[^\n]*organizations[^\n]*\n", ""))
    assert.is_true(r.stats.store_adoptions >= 1, "the script adopted no token from Redis")
    assert.is_true(r.stats.token_requests < minted, "the script minted every token itself")
    -- tokens by fingerprint: the ones the workers stored or adopted (their log) and the
    -- ones the script used; all but the first and last are in both
    local gateway_fps = {}
    for fp in g:log():gmatch("token [%a ]-fingerprint=(%x+)") do gateway_fps[fp] = true end
    local distinct, shared = 0, 0
    for _, e in ipairs(f:events(group[1])) do
      if e.kind == "fp" then
        distinct = distinct + 1
        if gateway_fps[e.arg] then shared = shared + 1 end
      end
    end
    assert.is_true(distinct >= 3, distinct .. " tokens used by the script")
    assert.is_true(shared >= distinct - 2, ("%d of the script's %d tokens were the gateway's"):format(shared, distinct))
  end)
end)
