-- The token manager with a shared store (docs/store.md): TWO managers sharing one
-- skewguard.store.memory, against the Genesys stand-in on loopback. The stand-in's
-- counters judge how many tokens were minted and whether they were accepted.
local token = require "skewguard.token"
local memory = require "skewguard.store.memory"
local curl = require "skewguard.transport.curl"
local skew = require "skewguard.skew"
local core = require "skewguard.core"
local errors = require "skewguard.errors"
local standin = require "support.standin"
local sleep = require("socket").sleep

local function key_for(s, client_id)
  -- the documented key formula, recomputed here rather than asked of the manager
  return "skewguard:" .. core.sha256_hex(s.url .. "/oauth/token\n" .. (client_id or "test-client")):sub(1, 32)
end

local function api_status(s, access)
  local status = s:request({ method = "GET", path = "/api/v2/tokens/me?preserveIdleTTL=true",
    headers = { Authorization = "Bearer " .. access } })
  return status
end

-- A transport that yields like a cosocket, so coroutines interleave.
local function yielding(inner)
  local t = setmetatable({}, { __index = inner })
  function t.request(_, req)
    coroutine.yield()
    return inner:request(req)
  end
  function t.sleep(_, seconds)
    local until_ = core.monotonic() + seconds
    repeat coroutine.yield() until core.monotonic() >= until_
  end
  return t
end

-- A transport on a host whose wall clock is `offset` seconds off (same libcurl,
-- shifted wall readings), so its estimator sees that skew.
local function shifted(inner, offset)
  local t = setmetatable({}, { __index = inner })
  function t.request(_, req)
    local res, err = inner:request(req)
    if res then
      res.t_send_wall, res.t_recv_wall = res.t_send_wall + offset, res.t_recv_wall + offset
    end
    return res, err
  end
  function t.wall() return core.wall() + offset end
  return t
end

local function run_all(fns)
  local cos, results = {}, {}
  for i, fn in ipairs(fns) do cos[i] = coroutine.create(function() results[i] = { fn() } end) end
  repeat
    local alive = false
    for _, co in ipairs(cos) do
      if coroutine.status(co) ~= "dead" then
        alive = true
        local ok, err = coroutine.resume(co)
        assert(ok, err)
      end
    end
  until not alive
  return results
end

describe("token manager with a shared store", function()
  local s
  local open = {}
  setup(function() s = standin.start({ lifetime = 60 }) end)
  teardown(function()
    for _, x in ipairs(open) do x:close() end
    if s then s:stop() end
  end)
  before_each(function() s:reset() end)

  local function manager(store, extra)
    local t = curl.new({ timeout = 5 })
    open[#open + 1] = t
    local o = { client_id = "test-client", client_secret = "test-secret", token_url = s.url .. "/oauth/token",
      store = store, estimator = skew.new(), transport = t }
    for k, v in pairs(extra or {}) do
      if k == "transport" then o[k] = v(t) else o[k] = v end
    end
    local tm = token.new(o)
    open[#open + 1] = tm
    return tm
  end

  it("mints one token for two managers: the second adopts the stored record", function()
    local store = memory.new()
    local a, b = manager(store), manager(store)
    local ta = assert(a:get())
    local tb = assert(b:get())
    assert.equal(ta, tb)
    assert.equal(1, s:counter("token_requests"))
    assert.equal(1, a:stats().store_writes)
    assert.equal(1, b:stats().store_adoptions)
    assert.equal(0, b:stats().token_requests)
    assert.equal(200, api_status(s, tb))
    -- the record: expiry in server time, no secret but the token itself, a fresh id
    local rec = store:get(key_for(s))
    assert.equal(1, rec.v)
    assert.equal(1, rec.generation)
    assert.matches("^%x+$", rec.id)
    assert.equal(60, rec.lifetime)
    assert.is_true(math.abs(rec.expires_at - (core.wall() + 60)) < 2.5)
    -- same boot: the reader took the writer's exact deadline
    assert.is_true(math.abs(a:info().deadline - b:info().deadline) < 0.01)
    assert.is_true(b:info().deadline <= a:info().deadline)
    -- and the writer's skew interval (same wall clock) as a sample of its own
    assert.same({ "store" }, b.estimator:sources())
    local alo, ahi = a.estimator:bounds()
    local blo, bhi = b.estimator:bounds()
    assert.is_true(blo <= alo + 1e-6 and bhi >= ahi - 1e-6 and bhi - blo < (ahi - alo) + 0.001)
  end)

  it("does not touch the store while the local token is fresh", function()
    local store = memory.new()
    local reads = 0
    local counting = setmetatable({ get = function(self, k) reads = reads + 1 return store.get(self, k) end },
      { __index = store })
    local a = manager(counting)
    assert(a:get())
    local after_first = reads
    for _ = 1, 100 do assert(a:get()) end
    assert.equal(after_first, reads)
  end)

  it("renews once per renewal period across both managers (2 s tokens, 2.6 s of use)", function()
    s:control({ lifetime = 2 })
    local store = memory.new()
    local a, b = manager(store), manager(store)
    local seen = {}
    local t_end = core.monotonic() + 2.6
    while core.monotonic() < t_end do
      for _, tm in ipairs({ a, b }) do
        local access = assert(tm:get())
        seen[access] = true
      end
      sleep(0.02)
    end
    local distinct = 0
    for _ in pairs(seen) do distinct = distinct + 1 end
    local minted = s:counter("token_requests")
    -- windows for 2 s tokens: advisory starts at most 1 + 0.2 s before expiry, so
    -- renewals are >= 0.8 s apart: at most ceil(2.6 / 0.8) + 1 = 5 tokens; at least
    -- one renewal must have happened (the first token expires at 2 s).
    assert.is_true(minted <= 5, "minted " .. minted)
    assert.is_true(minted >= 2, "minted " .. minted)
    assert.equal(minted, distinct)            -- every minted token was shared, none wasted
    assert.equal(minted, a:stats().store_writes + b:stats().store_writes)
    assert.equal(0, s:counter("api_401"))
  end)

  it("one coroutine renews, the other manager waits on the lock and adopts its token", function()
    local store = memory.new()
    local a = manager(store, { transport = yielding })
    local b = manager(store, { transport = yielding, wait_step = 0.01 })
    local r = run_all({ function() return a:get() end, function() return b:get() end })
    assert.truthy(r[1][1])
    assert.equal(r[1][1], r[2][1])
    assert.equal(1, s:counter("token_requests"))
    assert.equal(1, b:stats().store_lock_waits)
    assert.equal(1, b:stats().store_adoptions)
  end)

  it("after a 401, drops the stored record only if it is still the rejected one", function()
    local store = memory.new()
    local a, b = manager(store), manager(store)
    local x, gen_a = assert(a:get())
    local _, gen_b = assert(b:get())
    -- the token is revoked at the server; both managers will see a 401 with it
    assert.equal(204, (s:request({ method = "DELETE", path = "/api/v2/tokens/me",
      headers = { Authorization = "Bearer " .. x } })))
    assert.equal(401, api_status(s, x))
    assert.is_true(a:invalidate(gen_a))
    assert.equal(1, a:stats().store_deletes)
    assert.is_false(store:get(key_for(s)))
    local y = assert(a:get())
    assert.not_equal(x, y)
    -- b's compare-and-delete finds a record with another id: it stays
    assert.is_true(b:invalidate(gen_b))
    assert.equal(0, b:stats().store_deletes)
    assert.truthy(store:get(key_for(s)))
    assert.equal(y, (b:get()))
    assert.equal(2, s:counter("token_requests"))
    assert.equal(200, api_status(s, y))
  end)

  it("never adopts the token it was told is rejected", function()
    local store = memory.new()
    local a = manager(store)
    local x, gen = assert(a:get())
    -- a stale copy of the rejected record comes back (a slow writer elsewhere)
    local rec = store:get(key_for(s))
    assert.is_true(a:invalidate(gen))
    store:set(key_for(s), rec, 60)
    local y = assert(a:get())
    assert.not_equal(x, y)
    assert.equal(2, s:counter("token_requests"))
  end)

  it("takes the renewal over when the lock holder died (lock expires after lock_ttl)", function()
    local store = memory.new()
    -- a renewer that took the lock and died: nobody will unlock it
    assert.truthy(store:lock(key_for(s), 0.4))
    local b = manager(store, { wait_step = 0.02 })
    local t0 = core.monotonic()
    local access = assert(b:get())
    local waited = core.monotonic() - t0
    assert.is_true(waited >= 0.35 and waited < 2, "waited " .. waited)
    assert.equal(200, api_status(s, access))
    assert.equal(1, b:stats().store_takeovers)
    assert.equal(1, s:counter("token_requests"))
    assert.equal(1, store:get(key_for(s)).generation)
  end)

  it("takes over at the lock's expiry on the store's clock (injected time)", function()
    local shift = 0
    local store = memory.new({ now = function() return core.monotonic() + shift end })
    assert.truthy(store:lock(key_for(s), 3600)) -- an hour: only the injected clock can end it
    local b = manager(store, { transport = yielding, wait_step = 0.01 })
    local polls = 0
    local r = run_all({
      function() return b:get() end,
      function()
        while polls < 5 do polls = polls + 1 coroutine.yield() end
        shift = 3601
      end,
    })
    assert.truthy(r[1][1])
    assert.equal(1, b:stats().store_takeovers)
    assert.equal(1, s:counter("token_requests"))
  end)

  it("gives up waiting after wait_timeout with kind timeout", function()
    local store = memory.new()
    assert.truthy(store:lock(key_for(s), 60))
    local b = manager(store, { wait_step = 0.02, wait_timeout = 0.3 })
    local access, err = b:get()
    assert.is_nil(access)
    assert.equal("timeout", err.kind)
    assert.equal(0, s:counter("token_requests"))
  end)

  it("falls back to its own token when the store fails, backs off, and uses the store again", function()
    local store = memory.new()
    local down, calls = true, 0
    local flaky = {}
    for _, m in ipairs({ "get", "set", "delete_if", "lock", "unlock" }) do
      flaky[m] = function(_, ...)
        calls = calls + 1
        if down then return nil, errors.new("unavailable", "store unreachable (test)") end
        return store[m](store, ...)
      end
    end
    local lines = {}
    local a = manager(flaky, { random = function() return 0 end, -- backoff 1 s x 0.5
      logger = function(level, message) lines[#lines + 1] = level .. " " .. message end, log_level = "warn" })
    local x, gen = assert(a:get())
    assert.equal(200, api_status(s, x))
    assert.equal(1, a:stats().store_errors)
    assert.equal(1, calls)
    assert.matches("warn token store failed; using this process's own token", table.concat(lines, "\n"), 1, true)
    -- within the backoff the store is not asked, even when a renewal is needed
    assert.is_true(a:invalidate(gen))
    local y = assert(a:get())
    assert.not_equal(x, y)
    assert.equal(1, calls)
    -- the store is back and the backoff has passed: the next renewal goes through it
    down = false
    sleep(0.6)
    local _, gen2 = a:get()
    assert.is_true(a:invalidate(gen2))
    local z = assert(a:get())
    assert.truthy(store:get(key_for(s)))
    assert.equal(z, store:get(key_for(s)).access_token)
    assert.equal(1, a:stats().store_writes)
    assert.equal(3, s:counter("token_requests"))
  end)
end)

describe("token store records across hosts (expiry in server time)", function()
  local s
  local open = {}
  setup(function() s = standin.start({ lifetime = 60 }) end)
  teardown(function()
    for _, x in ipairs(open) do x:close() end
    if s then s:stop() end
  end)
  before_each(function() s:reset() end)

  local function host_manager(store, offset, clock_id, with_estimator)
    local inner = curl.new({ timeout = 5 })
    open[#open + 1] = inner
    local t = shifted(inner, offset)
    local tm = token.new({ client_id = "test-client", client_secret = "test-secret",
      token_url = s.url .. "/oauth/token", store = store, transport = t, clock_id = clock_id,
      estimator = with_estimator and skew.new({ wall = function() return core.wall() + offset end }) or nil })
    open[#open + 1] = tm
    return tm
  end

  it("a host 300 s ahead writes a record that a correct host reads with the right expiry", function()
    local store = memory.new()
    local a = host_manager(store, 300, "host-a", true)
    local b = host_manager(store, 0, "host-b", true)
    local x = assert(a:get())
    local rec = store:get(key_for(s))
    -- server time, not the writer's wall clock: within the Date sample's 1 s of true time
    assert.is_true(rec.expires_at <= core.wall() + 60 + 0.05)
    assert.is_true(rec.expires_at > core.wall() + 60 - 2)
    assert.is_true(rec.issuer_skew > 298 and rec.issuer_skew < 302)
    -- b has no sample yet: ±5 s tolerance, so at most 60 - 5 s left, and not much less
    local y = assert(b:get())
    assert.equal(x, y)
    local left = b:info().seconds_left
    assert.is_true(left <= 55.05 and left > 52, "seconds_left " .. left)
    assert.equal(1, s:counter("token_requests"))
  end)

  it("with its own estimate the reader loses only the estimates' widths", function()
    local store = memory.new()
    local b = host_manager(store, 0, "host-b", true)
    assert(b:get()) -- b mints and writes, with a Date sample of its own
    -- a: 120 s behind, with an estimate from one API response's Date header
    local inner = curl.new({ timeout = 5 })
    open[#open + 1] = inner
    local t = shifted(inner, -120)
    local est = skew.new({ wall = function() return core.wall() - 120 end })
    local res = assert(t:request({ url = s.url .. "/api/v2/organizations/me" }))
    assert.is_true(est:observe_date(res.headers.date, res.t_send_wall, res.t_recv_wall))
    local a = token.new({ client_id = "test-client", client_secret = "test-secret",
      token_url = s.url .. "/oauth/token", store = store, transport = t, clock_id = "host-a", estimator = est })
    open[#open + 1] = a
    assert(a:get())
    assert.equal(1, s:counter("token_requests"))
    assert.equal(1, a:stats().store_adoptions)
    local left, truth = a:info().seconds_left, b:info().seconds_left
    -- never later than the writer's exact deadline; writer and reader each lose at
    -- most their interval's width (a Date sample: about 1 s)
    assert.is_true(left <= truth + 0.01, ("%g > %g"):format(left, truth))
    assert.is_true(left > truth - 2.1, ("%g vs %g"):format(left, truth))
  end)

  it("a host without an estimate cannot adopt a record shorter than its tolerance", function()
    s:control({ lifetime = 4 })
    local store = memory.new()
    local a = host_manager(store, 0, "host-a", true)
    local b = host_manager(store, 0, "host-b", false)
    local x = assert(a:get())
    local y = assert(b:get())
    assert.not_equal(x, y)
    assert.equal(2, s:counter("token_requests"))
  end)
end)

describe("skewguard.store.memory", function()
  it("implements the interface: get/set, compare-and-delete, lock with expiry, owner-only unlock", function()
    local shift = 0
    local st = memory.new({ now = function() return 1000 + shift end })
    assert.is_false(st:get("k"))
    assert.is_true(st:set("k", { v = 1, id = "a" }, 10))
    local rec = st:get("k")
    rec.id = "changed" -- a copy: the store is untouched
    assert.equal("a", st:get("k").id)
    assert.is_false(st:delete_if("k", "b"))
    assert.is_true(st:delete_if("k", "a"))
    assert.is_false(st:delete_if("k", "a"))
    st:set("k", { id = "c" }, 10)
    shift = 10
    assert.is_false(st:get("k"))
    local owner = st:lock("k", 5)
    assert.matches("^%x+$", owner)
    assert.is_false(st:lock("k", 5))
    assert.is_false(st:unlock("k", "someone else"))
    assert.is_true(st:unlock("k", owner))
    local o2 = st:lock("k", 5)
    shift = 15
    local o3 = st:lock("k", 5)
    assert.truthy(o3)
    assert.not_equal(o2, o3)
    assert.is_false(st:unlock("k", o2))
    assert.has_error(function() st:set("k", { f = function() end }, 1) end)
    assert.has_error(function() st:lock("k", 0) end, "skewguard.store: ttl must be a positive number of seconds")
    assert.has_error(function() memory.new({ clock = 1 }) end, "skewguard.store.memory.new: unknown option clock")
  end)

  it("token.new refuses a store without the interface", function()
    assert.has_error(function()
      token.new({ client_id = "c", client_secret = "s", token_url = "http://127.0.0.1:1/oauth/token",
        store = { get = function() end } })
    end, "skewguard.token.new: option store has no set method (see docs/store.md)")
  end)
end)

describe("token managers sharing a real Redis store", function()
  local redis_server = require "support.redis_server"
  local redis_store = require "skewguard.store.redis"
  local s, rs
  local open = {}
  setup(function()
    s = standin.start({ lifetime = 60 })
    rs = redis_server.start({})
  end)
  teardown(function()
    for _, x in ipairs(open) do x:close() end
    if rs then rs:stop() end
    if s then s:stop() end
  end)

  it("hands the client secret over (use_secret) and shares one token between two hosts", function()
    local function host(clock_id)
      local t = curl.new({ timeout = 5 })
      -- no secret= here: the token manager supplies the client secret
      local store = redis_store.new({ port = rs.port, timeout = 1 })
      local tm = token.new({ client_id = "test-client", client_secret = "test-secret",
        token_url = s.url .. "/oauth/token", store = store, transport = t, estimator = skew.new(),
        clock_id = clock_id })
      open[#open + 1] = t
      open[#open + 1] = tm
      return tm
    end
    local a, b = host("host-a"), host("host-b")
    local x = assert(a:get())
    local y = assert(b:get())
    assert.equal(x, y)
    assert.equal(1, s:counter("token_requests"))
    assert.equal(1, b:stats().store_adoptions)
    assert.equal(0, b:stats().store_errors)
    -- the record in Redis is sealed: the token is not in it
    local raw = rs:cli("GET", key_for(s))
    assert.truthy(raw and #raw > 0)
    assert.is_nil(raw:find(x, 1, true))
  end)
end)
