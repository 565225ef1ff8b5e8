-- Issue 10 acceptance: a fleet of three client processes ("hosts", spec/support/fleet_host.lua)
-- whose wall clocks are +0, +300 s and -120 s off, sharing one credential through a real
-- redis-server on loopback, against the stand-in with 6 s tokens.
--
-- Renewal windows of a 6 s token (docs/token.md): mandatory min(60, 6/2) = 3 s, advisory
-- 3 + 0.6 x (1 - jitter U) <= 3.6 s before expiry. So a token is renewed at the earliest
-- when it is 2.4 s old on the host that reached its window first; an adopted token's
-- deadline is earlier than the writer's by the width of the two skew intervals (Date
-- samples, narrowed to tens of ms by the warm-up and the requests; allow 0.4 s). Shared
-- renewals are therefore >= 2 s apart, and a run of D seconds needs at most D / 2 + 1
-- token requests. Three hosts renewing on their own would need about 3 D / 2.7.
local redis_server = require "support.redis_server"
local standin = require "support.standin"
local fleet = require "support.fleet"
local redis_store = require "skewguard.store.redis"
local core = require "skewguard.core"
local cjson = require "cjson"

local LIFETIME = 6
local MIN_PERIOD = 2
local LOCK_TTL = 1.5
local HOSTS = { { name = "zero", offset = 0 }, { name = "ahead", offset = 300 }, { name = "behind", offset = -120 } }

local function bound(seconds) return math.floor(seconds / MIN_PERIOD) + 1 end

describe("fleet of three hosts through Redis (clocks +0, +300 s, -120 s)", function()
  local rs, s, f, key

  setup(function()
    rs = redis_server.start({})
    s = standin.start({ lifetime = LIFETIME })
    f = fleet.new()
    key = "skewguard:" .. core.sha256_hex(s.url .. "/oauth/token\n" .. s.client_id):sub(1, 32)
  end)
  teardown(function()
    if f then f:cleanup() end
    if s then s:stop() end
    if rs then rs:destroy() end
  end)
  before_each(function()
    s:reset()
    assert(rs:cli("FLUSHALL"))
  end)

  local function launch(duration)
    return f:launch({ standin = s, redis_port = rs.port, hosts = HOSTS, duration = duration, lock_ttl = LOCK_TTL })
  end

  -- The record as the hosts' secret opens it (nil when absent).
  local function record()
    local reader = redis_store.new({ port = rs.port, secret = s.client_secret })
    local rec = reader:get(key)
    reader:close()
    return rec or nil
  end

  -- Every surviving host: requests made, none failed.
  local function assert_no_failure(reports, min_requests)
    for i, r in pairs(reports) do
      assert.equal(0, r.failed, HOSTS[i].name .. " failed requests: " .. cjson.encode(r.errors)
        .. "\n" .. f:log(f.hosts[#f.hosts - #HOSTS + i]))
      assert.is_true(r.requests >= min_requests, HOSTS[i].name .. " made " .. r.requests .. " requests")
    end
  end

  it("share one token: one token request per renewal period, no expired-token 401", function()
    local duration = 15
    local group = launch(duration)
    local reports = f:wait(group)
    assert_no_failure(reports, 100)
    for i, r in ipairs(reports) do
      -- each host measured its own (injected) clock offset against the server
      assert.is_true(math.abs(r.skew - HOSTS[i].offset) < 0.5, HOSTS[i].name .. " skew " .. tostring(r.skew))
    end
    assert.equal(0, s:counter("api_401"))
    local minted = s:counter("token_requests")
    local written = 0
    for _, r in ipairs(reports) do written = written + r.stats.store_writes end
    assert.equal(minted, written) -- every token minted went into Redis
    assert.is_true(minted >= duration / LIFETIME, minted .. " token requests")
    assert.is_true(minted <= bound(duration), ("%d token requests in %d s > %d"):format(minted, duration,
      bound(duration)))
    -- every token but the last two was used by all three hosts
    local users = {}
    for _, h in ipairs(group) do
      for _, e in ipairs(f:events(h)) do
        if e.kind == "fp" then
          users[e.arg] = users[e.arg] or {}
          users[e.arg][h.name] = true
        end
      end
    end
    local distinct, shared = 0, 0
    for _, by in pairs(users) do
      distinct = distinct + 1
      if by.zero and by.ahead and by.behind then shared = shared + 1 end
    end
    assert.is_true(distinct <= minted)
    assert.is_true(shared >= distinct - 2, ("%d of %d tokens used by all hosts"):format(shared, distinct))
  end)

  it("kill -9 the lock holder mid-renewal: another host renews after the lock expires", function()
    local group = launch(10)
    fleet.sleep_until(group.start_at + 2)
    -- the next token request hangs far longer than any token lives
    s:control({ token = { kind = "hang", seconds = 8, count = 1 } })
    local t_hang = core.monotonic()
    local holder, locked_at
    while not holder and core.monotonic() < t_hang + LIFETIME do
      for _, h in ipairs(group) do
        local evs = f:events(h)
        local last = evs[#evs]
        -- holding the lock: the last lock event is a lock taken after the hang was set
        for i = #evs, 1, -1 do
          if evs[i].kind == "lock" or evs[i].kind == "unlock" then last = evs[i] break end
        end
        if last and last.kind == "lock" and last.t > t_hang then holder, locked_at = h, last.t end
      end
      if not holder then core.sleep(0.02) end
    end
    assert.truthy(holder, "no host took the renewal lock")
    -- it is stuck in the token request: the stand-in has the hanging one in flight
    core.sleep(0.2)
    assert.equal(1, s:counter("inflight"))
    f:kill(holder)
    local reports = f:wait(group)
    assert_no_failure(reports, 50)
    -- the next lock went to a survivor, not before the killed holder's lock expired
    local takeover
    for _, h in ipairs(group) do
      if h ~= holder then
        for _, e in ipairs(f:events(h)) do
          if e.kind == "lock" and e.t > locked_at and (not takeover or e.t < takeover.t) then
            takeover = { t = e.t, host = h }
          end
        end
      end
    end
    assert.truthy(takeover, "no survivor took the lock over")
    assert.is_true(takeover.t >= locked_at + LOCK_TTL - 0.05,
      ("lock taken over %.3f s after the holder took it (lock_ttl %g)"):format(takeover.t - locked_at, LOCK_TTL))
    -- and renewed: a token minted after the takeover is in use by the survivors
    for i, h in ipairs(group) do
      if h ~= holder then
        local renewed = false
        for _, e in ipairs(f:events(h)) do renewed = renewed or (e.kind == "fp" and e.t > takeover.t) end
        assert.is_true(renewed, h.name .. " never used a token minted after the takeover")
        assert.is_true(reports[i].ok > 0)
      end
    end
    assert.equal(0, s:counter("api_401_expired"))
  end)

  it("Redis holds ciphertext only; a record tampered with in Redis is rejected and replaced", function()
    local group = launch(8)
    fleet.sleep_until(group.start_at + 2)
    local raw = assert(rs:cli("GET", key))
    local rec = assert(record(), "the hosts' secret does not open the record")
    local fp = core.fingerprint(rec.access_token)
    -- nowhere in the raw value: no 43-byte window is the token
    for i = 1, #raw - #rec.access_token + 1 do
      assert.are_not.equal(fp, core.fingerprint(raw:sub(i, i + #rec.access_token - 1)))
    end
    -- and nothing found in it opens the API: the id, the sealed part (in hex: raw bytes
    -- cannot go into a header), every printable run that could be a token
    local id, sealed = raw:match("^([^\n]*)\n(.*)$")
    local candidates = { id, (sealed:gsub(".", function(c) return ("%02x"):format(c:byte()) end)) }
    for run in raw:gmatch("[%w%-_%.~+/=]+") do
      if #run >= 16 then candidates[#candidates + 1] = run end
    end
    local before = s:counter("api_401")
    for _, c in ipairs(candidates) do
      local status = s:request({ method = "GET", path = "/api/v2/tokens/me?preserveIdleTTL=true",
        headers = { Authorization = "Bearer " .. c } })
      assert.equal(401, status)
    end
    assert.equal(before + #candidates, s:counter("api_401"))
    -- flip one byte of the ciphertext, keep the TTL
    local pos = #id + 1 + math.floor(#sealed / 2)
    local tampered = raw:sub(1, pos - 1) .. string.char((raw:byte(pos) + 1) % 256) .. raw:sub(pos + 1)
    assert(rs:cli("SET", key, tampered, "KEEPTTL"))
    local minted = s:counter("token_requests")
    local replaced
    while not replaced and core.monotonic() < group.stop_at - 0.5 do
      core.sleep(0.1)
      local now = record()
      if now and now.id ~= rec.id then replaced = now end
    end
    assert.truthy(replaced, "the tampered record was never replaced")
    assert.is_true(s:counter("token_requests") > minted) -- a host renewed
    local reports = f:wait(group)
    assert_no_failure(reports, 50)
    -- the sealed token was the one the hosts used
    local used = false
    for _, h in ipairs(group) do
      for _, e in ipairs(f:events(h)) do used = used or (e.kind == "fp" and e.arg == fp) end
    end
    assert.is_true(used, "the record's token was used by no host")
    local bogus = 0
    for _, r in ipairs(reports) do bogus = bogus + r.store.bogus end
    assert.is_true(bogus >= 1, "no host saw the tampered record")
    assert.equal(0, s:counter("api_401_expired"))
  end)

  it("Redis stopped mid-run: per-process tokens; started again: back to one shared token", function()
    local group = launch(20)
    fleet.sleep_until(group.start_at + 3)
    rs:stop()
    local stopped_at = core.monotonic()
    core.sleep(5)
    local minted_down = s:counter("token_requests")
    rs:start_again()
    -- converged: every host uses the token the (new, empty) Redis holds
    local converged
    while not converged and core.monotonic() < group.stop_at - 7 do
      core.sleep(0.1)
      local rec = record()
      if rec then
        local fp = core.fingerprint(rec.access_token)
        converged = core.monotonic()
        for _, h in ipairs(group) do
          if f:status(h).fingerprint ~= fp then converged = nil end
        end
      end
    end
    assert.truthy(converged, "the hosts did not converge back to one shared token")
    local minted_at_convergence = s:counter("token_requests")
    local reports = f:wait(group)
    assert_no_failure(reports, 100)
    for _, h in ipairs(group) do
      -- each host warned and went on with its own token while Redis was down
      assert.matches("token store failed; using this process's own token", f:log(h), 1, true)
      local own = false
      for _, e in ipairs(f:events(h)) do own = own or (e.kind == "fp" and e.t > stopped_at and e.t < stopped_at + 5) end
      assert.is_true(own, h.name .. " renewed nothing while Redis was down")
    end
    assert.is_true(minted_down >= 3, "fewer token requests than hosts while Redis was down")
    local window = group.stop_at - converged
    local minted = s:counter("token_requests") - minted_at_convergence
    assert.is_true(minted <= bound(window), ("%d token requests in the last %.1f s after convergence > %d")
      :format(minted, window, bound(window)))
    assert.equal(0, s:counter("api_401_expired"))
  end)
end)
