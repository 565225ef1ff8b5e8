local core = require "skewguard.core"
local skew = require "skewguard.skew"
local prng = require "support.prng"

local function contains(est, truth, now)
  local lo, hi = est:bounds(now)
  return lo ~= nil and lo <= truth and truth <= hi
end

describe("skew estimator", function()
  describe("without samples", function()
    it("knows nothing and says so with nil", function()
      local est = skew.new()
      assert.equal(0, est:samples())
      assert.is_nil(est:skew())
      assert.is_nil(est:bounds())
      assert.is_nil(est:uncertainty())
      assert.is_nil(est:server_now())
      assert.is_nil(est:to_local(1000))
      assert.is_nil(est:to_server(1000))
      assert.same({}, est:sources())
      assert.truthy(tostring(est):find("no samples", 1, true))
    end)

    it("is a named class with __gc, __close and __tostring", function()
      local est = skew.new()
      local mt = getmetatable(est)
      assert.equal("skewguard.skew", mt.__name)
      assert.is_function(mt.__gc)
      assert.is_function(mt.__close)
      assert.is_function(mt.__tostring)
      assert.is_true(skew.is(est))
      assert.is_false(skew.is({}))
    end)
  end)

  describe("intervals", function()
    it("intersects samples: midpoint is the skew, half-width the uncertainty", function()
      local est = skew.new({ drift_ppm = 0 })
      assert.same({ true, false }, { est:observe_interval(0, 1, "sntp", 100) })
      est:observe_interval(0.5, 1.5, "sntp", 100)
      assert.same({ 0.5, 1 }, { est:bounds(100) })
      assert.equal(0.75, est:skew(100))
      assert.equal(0.25, est:uncertainty(100))
      assert.equal(2, est:samples())
    end)

    it("widens old samples by the drift bound as they age", function()
      local est = skew.new({ drift_ppm = 50 })
      est:observe_interval(0, 1, "sntp", 1000)
      local lo, hi = est:bounds(3000) -- 2000 s later: 50e-6 * 2000 = 0.1 s each side
      assert.near(-0.1, lo, 1e-9)
      assert.near(1.1, hi, 1e-9)
      lo, hi = est:bounds(500) -- before the sample (the wall clock went back): also wider
      assert.near(-0.025, lo, 1e-9)
      assert.near(1.025, hi, 1e-9)
      assert.near(0.6, est:uncertainty(3000), 1e-9)
    end)

    it("lets an aged sample stop constraining once a fresh one is tighter", function()
      local est = skew.new({ drift_ppm = 100 })
      est:observe_interval(0.40, 0.41, "sntp", 0)
      est:observe_interval(0.30, 0.70, "date", 10000) -- the first has widened to 0.40 +/- 1
      local lo, hi = est:bounds(10000)
      assert.near(0.30, lo, 1e-9)
      assert.near(0.70, hi, 1e-9)
    end)

    it("restarts from the newest sample when one does not intersect (a clock step)", function()
      local est = skew.new({ drift_ppm = 0 })
      est:observe_interval(0, 1, "date", 10)
      est:observe_interval(0.5, 1.5, "date", 11)
      local ok, stepped = est:observe_interval(3, 4, "sntp", 12)
      assert.is_true(ok)
      assert.is_true(stepped)
      assert.equal(1, est:samples())
      assert.same({ 3, 4 }, { est:bounds(12) })
      assert.equal(1, est:steps())
      assert.same({ "sntp" }, est:sources())
    end)

    it("keeps the newest mutually consistent samples across a step, not the older ones", function()
      local est = skew.new({ drift_ppm = 0 })
      est:observe_interval(0, 2, "date", 1)
      est:observe_interval(1, 3, "date", 2)   -- estimate [1, 2]
      local _, stepped = est:observe_interval(2.5, 3.5, "date", 3)
      assert.is_true(stepped)
      assert.equal(2, est:samples())          -- [2.5, 3.5] and [1, 3]; [0, 2] is before the step
      assert.same({ 2.5, 3 }, { est:bounds(3) })
    end)

    it("keeps only max_samples, forgetting the oldest", function()
      local est = skew.new({ drift_ppm = 0, max_samples = 3 })
      est:observe_interval(0.9, 1.0, "date", 1)
      est:observe_interval(0.0, 2.0, "date", 2)
      est:observe_interval(0.0, 2.0, "date", 3)
      assert.same({ 0.9, 1.0 }, { est:bounds(3) })
      est:observe_interval(0.0, 2.0, "date", 4)
      assert.equal(3, est:samples())
      assert.same({ 0, 2 }, { est:bounds(4) })
    end)

    it("lists the sources of the active samples", function()
      local est = skew.new({ drift_ppm = 0 })
      est:observe_interval(0, 1, "sntp", 1)
      est:observe_interval(0, 1, "date", 2)
      est:observe_interval(0, 1, "date", 3)
      assert.same({ "sntp", "date" }, est:sources())
      est:observe_interval(0, 1, nil, 4)
      assert.same({ "sntp", "date", "interval" }, est:sources())
    end)

    it("resets to knowing nothing", function()
      local est = skew.new()
      est:observe_interval(0, 1, "sntp", 1)
      est:reset()
      assert.equal(0, est:samples())
      assert.is_nil(est:skew(1))
      est:observe_interval(5, 6, "sntp", 2)
      assert.equal(5.5, est:skew(2))
    end)
  end)

  describe("conversions", function()
    -- local clock 2..4 s ahead of the server
    local est = skew.new({ drift_ppm = 0 })
    est:observe_interval(2, 4, "sntp", 1000)

    it("maps server time to the local clock; early and late are the ends of the interval", function()
      assert.equal(1003, est:to_local(1000, nil, 1000))
      assert.equal(1002, est:to_local(1000, "early", 1000)) -- for deadlines (exp)
      assert.equal(1004, est:to_local(1000, "late", 1000))  -- for start times (nbf, Retry-After)
    end)

    it("maps local time to the server clock", function()
      assert.equal(997, est:to_server(1000, "mid", 1000))
      assert.equal(996, est:to_server(1000, "early", 1000))
      assert.equal(998, est:to_server(1000, "late", 1000))
    end)

    it("reads the server clock now: local now minus skew", function()
      assert.equal(997, est:server_now("mid", 1000))
      assert.equal(996, est:server_now("early", 1000))
      assert.equal(998, est:server_now("late", 1000))
    end)

    it("raises on an unknown end (misuse)", function()
      assert.has_error(function() est:to_local(1000, "soon") end)
    end)
  end)

  describe("injected wall clock", function()
    it("is used wherever no explicit time is given", function()
      local now = 5000
      local est = skew.new({ drift_ppm = 100, wall = function() return now end })
      est:observe_interval(-1.5, -0.5, "sntp")
      assert.equal(-1, est:skew())
      assert.equal(0.5, est:uncertainty())
      assert.equal(5001, est:server_now())
      now = 6000 -- 1000 s later, 0.1 s wider each side
      assert.near(0.6, est:uncertainty(), 1e-9)
      assert.near(5999, est:to_local(6000), 1e-9)
    end)

    it("must return a number", function()
      local est = skew.new({ wall = function() return "noon" end })
      assert.has_error(function() est:observe_interval(0, 1) end)
    end)
  end)

  describe("Date samples", function()
    local D = 784111777 -- Sun, 06 Nov 1994 08:49:37 GMT

    it("give [t_send - (D + 1), t_recv - D]", function()
      local est = skew.new({ drift_ppm = 0, stamp_lag = 0 })
      assert.is_true(est:observe_date("Sun, 06 Nov 1994 08:49:37 GMT", D + 5.25, D + 5.5))
      local lo, hi = est:bounds(D + 5.5)
      assert.near(4.25, lo, 1e-6)
      assert.near(5.5, hi, 1e-6)
      assert.same({ "date" }, est:sources())
    end)

    it("lower the bound by stamp_lag (1 ms by default): a server's cached clock may lag", function()
      local est = skew.new({ drift_ppm = 0 })
      assert.is_true(est:observe_date("Sun, 06 Nov 1994 08:49:37 GMT", D + 5.25, D + 5.5))
      local lo, hi = est:bounds(D + 5.5)
      assert.near(4.249, lo, 1e-6)
      assert.near(5.5, hi, 1e-6)
      local est2 = skew.new({ drift_ppm = 0, stamp_lag = 0.25 })
      est2:observe_date("Sun, 06 Nov 1994 08:49:37 GMT", D + 5.25, D + 5.5)
      assert.near(4.0, (est2:bounds(D + 5.5)), 1e-6)
      assert.has_error(function() skew.new({ stamp_lag = 2 }) end)
    end)

    it("drop an unparsable header with nil, msg, kind", function()
      local est = skew.new()
      for _, h in ipairs({ "hello", "12", "", "Sun, 06 Nov 1994 08:49:37 PST" }) do
        local ok, msg, kind = est:observe_date(h, D, D + 0.01)
        assert.is_nil(ok)
        assert.equal("protocol", kind)
        assert.truthy(msg:find("dropped", 1, true))
      end
      assert.equal(0, est:samples())
    end)

    it("drop a sample whose round trip exceeds max_rtt", function()
      local est = skew.new({ max_rtt = 2 })
      local ok, msg, kind = est:observe_date("Sun, 06 Nov 1994 08:49:37 GMT", D, D + 2.5)
      assert.is_nil(ok)
      assert.equal("bogus", kind)
      assert.truthy(msg:find("round trip", 1, true))
      assert.equal(0, est:samples())
      assert.is_true(est:observe_date("Sun, 06 Nov 1994 08:49:37 GMT", D, D + 1.5))
    end)

    it("raise when t_recv is before t_send (misuse)", function()
      local est = skew.new()
      assert.has_error(function() est:observe_date("Sun, 06 Nov 1994 08:49:37 GMT", D + 1, D) end)
    end)
  end)

  describe("misuse", function()
    it("raises on bad options and arguments", function()
      assert.has_error(function() skew.new({ drift = 50 }) end)
      assert.has_error(function() skew.new({ drift_ppm = "50" }) end)
      assert.has_error(function() skew.new({ drift_ppm = -1 }) end)
      assert.has_error(function() skew.new({ max_samples = 0 }) end)
      assert.has_error(function() skew.new({ max_samples = 257 }) end)
      assert.has_error(function() skew.new({ max_samples = 2.5 }) end)
      assert.has_error(function() skew.new({ max_rtt = 0 }) end)
      local est = skew.new()
      assert.has_error(function() est:observe_interval(2, 1, "x", 0) end)
      assert.has_error(function() est:observe_interval(0 / 0, 1, "x", 0) end)
      assert.has_error(function() est:observe_interval(0, math.huge, "x", 0) end)
      assert.has_error(function() est:observe_interval(0, 1, "", 0) end)
      assert.has_error(function() est:observe_interval(0, 1, "a-very-long-source-name", 0) end)
      for i = 1, 8 do est:observe_interval(0, 1, "s" .. i, 0) end
      assert.has_error(function() est:observe_interval(0, 1, "s9", 0) end)
    end)

    it("closes idempotently; a closed estimator raises", function()
      local est = skew.new()
      est:observe_interval(0, 1, "sntp", 0)
      est:close()
      est:close()
      getmetatable(est).__close(est)
      assert.truthy(tostring(est):find("closed", 1, true))
      assert.has_error(function() est:skew() end)
      assert.has_error(function() est:observe_interval(0, 1, "sntp", 0) end)
    end)
  end)
end)

-- DESIGN.md §2 acceptance: a server 7.3 s ahead (skew = local - server = -7.3),
-- Date headers of 1 s resolution, send phases uniformly random, round trips 1-20 ms.
describe("skew estimator in a seeded simulation", function()
  local function median(t)
    table.sort(t)
    local n = #t
    if n % 2 == 1 then return t[(n + 1) / 2] end
    return (t[n / 2] + t[n / 2 + 1]) / 2
  end

  -- One request/response: the server stamps its Date at a random instant of the
  -- round trip, floored to the second. `clock` is { now = local wall, skew = truth }.
  local function exchange(rand, est, clock)
    clock.now = clock.now + rand(0.05, 2.0) -- next request at a random phase
    local t_send = clock.now
    local rtt = rand(0.001, 0.020)
    local stamped_local = t_send + rand() * rtt
    local server_time = stamped_local - clock.skew + (clock.drift or 0) * (stamped_local - clock.t0)
    local t_recv = t_send + rtt
    clock.now = t_recv
    assert.is_true(est:observe_date(core.format_http_date(server_time), t_send, t_recv))
    return clock.skew - (clock.drift or 0) * (t_recv - clock.t0)
  end

  it("always contains the truth, narrows below 50 ms in 60 samples and follows 2 s steps", function()
    local widths, recovery, misses = {}, {}, 0
    for run = 1, 200 do
      local rand = prng.new(run * 7919)
      local est = skew.new()
      local start = 1.7e9 + rand(0, 1e8)
      local clock = { now = start, t0 = start, skew = -7.3 }
      for _ = 1, 60 do
        local truth = exchange(rand, est, clock)
        if not contains(est, truth, clock.now) then misses = misses + 1 end
      end
      local lo, hi = est:bounds(clock.now)
      widths[#widths + 1] = hi - lo
      -- The local clock steps by 2 s (forward on odd runs, back on even ones).
      local step = (run % 2 == 1) and 2 or -2
      clock.now = clock.now + step
      clock.skew = clock.skew + step
      local first_ok
      for i = 1, 40 do
        local truth = exchange(rand, est, clock)
        local ok = contains(est, truth, clock.now)
        if ok and not first_ok then first_ok = i end
        if first_ok and not ok then misses = misses + 1 end -- once found, never lost again
      end
      recovery[#recovery + 1] = first_ok or math.huge
      assert.equal(1, est:steps())
    end
    assert.equal(0, misses)
    local w = median(widths)
    assert.is_true(w < 0.050, ("median width after 60 samples %.1f ms"):format(w * 1000))
    table.sort(recovery)
    assert.is_true(recovery[#recovery] <= 10, "worst recovery " .. recovery[#recovery] .. " samples")
  end)

  it("stays correct with a real drift inside the bound over long gaps", function()
    for run = 1, 20 do
      local rand = prng.new(run * 104729)
      local est = skew.new({ drift_ppm = 50 })
      local start = 1.7e9
      local clock = { now = start, t0 = start, skew = 3.25, drift = rand(-40e-6, 40e-6) }
      for _ = 1, 150 do
        clock.now = clock.now + rand(0, 120) -- sparse traffic: minutes between requests
        local truth = exchange(rand, est, clock)
        assert.is_true(contains(est, truth, clock.now))
        assert.is_true(contains(est, truth - clock.drift * 600, clock.now + 600)) -- and later on
      end
      assert.equal(0, est:steps())
    end
  end)
end)
