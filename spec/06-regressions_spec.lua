-- What the fuzzers in fuzz/ found, kept as behaviour specs; each fails without
-- its fix. Fuzzer inputs also stay in
-- fuzz/corpus/<target>/.
local core = require "skewguard.core"

describe("hardening regressions", function()
  it("skew_new with three arguments has no wall function and uses the system clock", function()
    -- fuzz/corpus/skew/regress-skew-new-three-args: the userdata landed at index 4
    -- and became its own wall clock, so every query raised "attempt to call".
    local est = core.skew_new(50, 16, 5)
    assert.is_nil(est:bounds())
    assert.truthy(tostring(est):find("no samples", 1, true))
    assert.is_true((est:observe_interval(-0.5, 0.5, "a")))
    local lo, hi = est:bounds()
    assert.is_true(lo <= -0.49 and hi >= 0.49 and hi - lo < 1.01)
    assert.near(core.wall(), est:server_now(), 1)
    est:close()
  end)

  it("skew estimator: a sample that disagrees with an older one across a wall step back is a step", function()
    -- fuzz/corpus/skew/regress-empty-interval-after-wall-step-back: the new sample
    -- was checked against the estimate evaluated at a later sample's time (widened
    -- more), so it was kept beside a sample it contradicts; once the later sample
    -- aged out of the ring the estimate was an empty interval (lo > hi).
    local est = core.skew_new(500, 2, 5)
    local T = 1700000000
    est:observe_interval(-1000, 1000, "a", T + 10000) -- a sample stamped in the future
    est:observe_interval(100, 101, "b", T)             -- the wall clock went back
    local _, stepped = est:observe_interval(95, 96, "c", T + 5000)
    assert.is_true(stepped)
    assert.equal(1, est:steps())
    for _, at in ipairs({ T + 5000, T + 5100, T + 20000 }) do
      local lo, hi = est:bounds(at)
      assert.is_true(lo <= hi, ("empty interval [%.6f, %.6f] at %.0f"):format(lo, hi, at))
    end
    local lo, hi = est:bounds(T + 5000)
    assert.near(95, lo, 1e-9)
    assert.near(96, hi, 1e-9)
  end)

  it("HTTP-date: a leap second on 9999-12-31 is refused, not turned into year 10000", function()
    -- fuzz/corpus/httpdate/regress-leap-second-into-year-10000: the leap second moves
    -- to the next minute, here 10000-01-01, a time no HTTP-date can say and that
    -- format_http_date refuses; parse and Retry-After must stay inside the range.
    local last = "Fri, 31 Dec 9999 23:59:60 GMT"
    local t, msg, kind = core.parse_http_date(last)
    assert.is_nil(t)
    assert.equal("protocol", kind)
    assert.truthy(msg)
    assert.is_nil((core.parse_retry_after(last)))
    local just_before = assert(core.parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT"))
    assert.equal("Fri, 31 Dec 9999 23:59:59 GMT", core.format_http_date(just_before))
    -- other leap seconds still land on the next minute
    assert.equal(1, assert(core.parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT"))
      - assert(core.parse_http_date("Sat, 31 Dec 2016 23:59:59 GMT")))
  end)

  it("redis reader refuses an array count it would have to allocate gigabytes for", function()
    -- fuzz/corpus/redis_reply/regress-oom-array-count: hiredis 0.14 callocs the element
    -- pointers on reading the count, so 12 bytes asked for 2.5 GB.
    local r = core.redis_reader()
    assert.is_true(r:feed("*311111111\r\n"))
    local v, msg, kind = r:reply()
    assert.is_nil(v)
    assert.equal("protocol", kind)
    assert.truthy(msg:find("more than 65536 elements", 1, true))
    r:close()
    local ok = core.redis_reader()
    ok:feed("*3\r\n$1\r\na\r\n:2\r\n$-1\r\n")
    assert.same({ "a", 2, false }, ok:reply())
    ok:close()
  end)
end)
