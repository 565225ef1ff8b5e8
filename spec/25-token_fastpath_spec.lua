-- The fresh-token fast path (tok:fresh, tok:fresh_reader, client:token()): it must
-- give exactly what the policy path gives while the token is fresh, and defer to
-- the policy in every other state.
local core = require "skewguard.core"
local standin = require "support.standin"
local genesys = require "skewguard.genesys"

local function new_token(opts)
  opts = opts or {}
  opts.client_id = "fast-path-client"
  opts.client_secret = "fast-path-secret"
  return core.token(opts)
end

local function answer(access, expires_in)
  return { access_token = access, token_type = "bearer", expires_in = expires_in or 100 }
end

-- tok:fresh(now) must agree with access_token(now)/state(now) at every instant.
local function assert_agrees(tok, now)
  local a, g, fp = tok:fresh(now)
  local access, state = tok:access_token(now)
  if state == "fresh" then
    assert.equal(access, a)
    assert.equal(tok:generation(), g)
    assert.equal(tok:info(now).fingerprint, fp)
  else
    assert.is_nil(a)
    assert.equal(state, g)
  end
  return state
end

describe("fresh-token fast path", function()
  describe("with injected time", function()
    it("returns the token exactly in the fresh state, at and around every boundary", function()
      -- deadline 1100, mandatory 10 s, advisory 20 s; nbf makes it valid from 1010
      local tok = new_token({ buffer = 10, jitter = 0, advisory_fraction = 0.1 })
      assert.equal("empty", assert_agrees(tok, 1000))
      assert.equal(1, tok:accept(answer("AT-one"), 1000, { now = 1000, t_send_wall = 5000, nbf = 5010,
        skew_lo = 0, skew_hi = 0 }))
      local info = tok:info(1000)
      assert.equal(1010, info.valid_from)
      assert.equal(20, info.advisory)
      local seen = {}
      local eps = 1e-9
      local instants = { 1000, 1010 - eps, 1010, 1010 + eps, 1080 - eps, 1080, 1080 + eps,
        1090 - eps, 1090, 1090 + eps, 1100 - eps, 1100, 1100 + eps, 2000 }
      for i = 0, 999 do instants[#instants + 1] = 1000 + i * 0.1 + math.random() * 0.1 end
      for _, t in ipairs(instants) do seen[assert_agrees(tok, t)] = true end
      assert.same({ not_yet_valid = true, fresh = true, advisory = true, mandatory = true, expired = true }, seen)
      assert.is_nil((tok:fresh(1080)))   -- advisory begins exactly at deadline - advisory
      assert.equal("AT-one", (tok:fresh(1080 - eps)))
    end)

    it("follows invalidation, replacement and a rejected answer", function()
      local tok = new_token({ buffer = 10, jitter = 0 })
      local gen = tok:accept(answer("AT-one"), 1000, { now = 1000 })
      assert.equal("AT-one", (tok:fresh(1001)))
      assert.is_true(tok:invalidate(gen))
      assert.same({ nil, "empty" }, { tok:fresh(1001) })
      tok:accept(answer("AT-two"), 1001, { now = 1001 })
      local a, g, fp = tok:fresh(1002)
      assert.same({ "AT-two", 2, core.fingerprint("AT-two") }, { a, g, fp })
      -- a rejected answer keeps the current token, and so does the fast path
      assert.is_nil((tok:accept(answer("AT-three", -5), 1002, { now = 1002 })))
      assert.equal("AT-two", (tok:fresh(1003)))
      tok:close()
      assert.has_error(function() tok:fresh(1003) end, "skewguard.token: used after close()")
      assert.has_error(function() tok:access_token(1003) end, "skewguard.token: used after close()")
    end)
  end)

  describe("reader on the process's monotonic clock", function()
    -- A token accepted now with its send instant `age` seconds ago: mandatory 10 s,
    -- advisory 20 s before the deadline at send + 100 s.
    local function aged(age, access)
      local tok = new_token({ buffer = 10, jitter = 0, advisory_fraction = 0.1 })
      assert(tok:accept(answer(access or "AT-aged"), core.monotonic() - age))
      return tok, tok:fresh_reader()
    end

    it("returns the token when fresh, with generation and fingerprint on request", function()
      local tok, reader = aged(0)
      assert.equal("AT-aged", reader())
      assert.same({ "AT-aged", 1, core.fingerprint("AT-aged") }, { reader(true) })
      assert.equal("fresh", (tok:state()))
      assert.equal("AT-aged", (tok:fresh()))
    end)

    it("defers in the advisory, mandatory, expired and not-yet-valid states", function()
      local tok, reader = aged(85)
      assert.equal("advisory", (tok:state()))
      assert.is_nil(reader())
      assert.same({ nil, "advisory" }, { tok:fresh() })
      tok, reader = aged(95)
      assert.equal("mandatory", (tok:state()))
      assert.is_nil(reader())
      tok = new_token({ buffer = 0 })
      reader = tok:fresh_reader()
      assert.is_nil(reader()) -- empty
      assert(tok:accept(answer("AT-short", 0.05), core.monotonic()))
      core.sleep(0.06)
      assert.equal("expired", (tok:state()))
      assert.is_nil(reader())
      tok = new_token({ buffer = 1 })
      reader = tok:fresh_reader()
      local mono, wall = core.now()
      assert(tok:accept(answer("AT-nbf"), mono, { t_send_wall = wall, nbf = wall + 30, skew_lo = 0, skew_hi = 0 }))
      assert.equal("not_yet_valid", (tok:state()))
      assert.is_nil(reader())
    end)

    it("stops returning the token before the precise clock reaches the advisory window", function()
      -- the advisory window starts 40 ms from now
      local tok, reader = aged(80 - 0.04, "AT-edge")
      local last_fast, first_advisory, violations = nil, nil, 0
      local stop = core.monotonic() + 0.1
      while core.monotonic() < stop do
        local before = tok:state()          -- precise clock, read before the reader
        local got = reader()
        local t = core.monotonic()
        if got then
          assert.equal("AT-edge", got)
          last_fast = t
          if before ~= "fresh" then violations = violations + 1 end
        end
        if before == "advisory" and not first_advisory then first_advisory = t end
      end
      assert.equal(0, violations)
      assert.truthy(last_fast)
      assert.truthy(first_advisory)
      assert.is_true(last_fast < first_advisory)
    end)

    it("follows invalidation and replacement, and defers once closed", function()
      local tok, reader = aged(0, "AT-one")
      assert.is_true(tok:invalidate(1))
      assert.is_nil(reader())
      assert(tok:accept(answer("AT-two"), core.monotonic()))
      assert.same({ "AT-two", 2, core.fingerprint("AT-two") }, { reader(true) })
      tok:close()
      assert.is_nil(reader())
      assert.is_nil(reader(true))
    end)

    it("never reads its own clock for deadlines set on an injected clock", function()
      local tok = new_token({ buffer = 1 })
      assert(tok:accept(answer("AT-virtual"), 5, { now = 5 }))
      assert.equal("AT-virtual", (tok:fresh(6)))
      assert.is_nil(tok:fresh_reader()())
      assert.is_nil((tok:fresh()))
    end)
  end)

  describe("client:token() and client:request() against the stand-in", function()
    local s
    setup(function() s = standin.start { lifetime = 3600 } end)
    teardown(function() if s then s:stop() end end)
    before_each(function() s:reset() end)

    local function new_client()
      return genesys.new { login_url = s.url, client_id = s.client_id, client_secret = s.client_secret,
        timeout = 3, jitter = 0, buffer = 10, advisory_fraction = 0.1, rate_limit = false }
    end

    -- Puts a real stand-in token into the client's token userdata as if it had
    -- been requested `age` seconds ago with a 100 s lifetime.
    local function install(c, age)
      local access = s:token()
      assert(c.tokens.tok:accept(answer(access), core.monotonic() - age))
      return access
    end

    it("fresh: the manager's token, without a token request", function()
      local c = new_client()
      local first = assert(c:token())
      assert.equal(1, s:counter("token_requests"))
      assert.equal(first, c:token())
      assert.equal(first, (c.tokens:get()))
      assert.equal(first, (c._fresh()))
      assert.equal(1, s:counter("token_requests"))
      c:close()
    end)

    for _, case in ipairs({ { "advisory", 85 }, { "mandatory", 95 } }) do
      it(case[1] .. ": defers to the policy, which renews once", function()
        local c = new_client()
        local old = install(c, case[2])
        local before = s:counter("token_requests")
        assert.equal(case[1], (c.tokens:state()))
        assert.is_nil(c._fresh())
        local got = assert(c:token())
        assert.are_not.equal(old, got)
        assert.equal(before + 1, s:counter("token_requests"))
        assert.equal("fresh", (c.tokens:state()))
        assert.equal(got, c:token())
        assert.equal(before + 1, s:counter("token_requests"))
        c:close()
      end)
    end

    it("expired: defers to the policy, which renews", function()
      local c = new_client()
      assert(c.tokens.tok:accept(answer(s:token(), 0.05), core.monotonic()))
      core.sleep(0.06)
      local before = s:counter("token_requests")
      assert.is_nil(c._fresh())
      assert.truthy(c:token())
      assert.equal(before + 1, s:counter("token_requests"))
      c:close()
    end)

    it("invalidated and replaced: never the old string", function()
      local c = new_client()
      local first = assert(c:token())
      c.tokens:invalidate(c.tokens.tok:generation())
      local second = assert(c:token())
      assert.are_not.equal(first, second)
      assert.equal(2, s:counter("token_requests"))
      assert(c.tokens:refresh())
      local third = assert(c:token())
      assert.are_not.equal(second, third)
      assert.equal(third, (c.tokens:get()))
      c:close()
    end)

    it("the instance's token field answers for its own client only", function()
      local a, b = new_client(), new_client()
      local ta, tb = assert(a:token()), assert(b:token())
      assert.are_not.equal(ta, tb)
      assert.equal(tb, a.token(b))
      assert.equal(ta, b.token(a))
      a:close()
      b:close()
    end)

    it("feeds the estimator the first and the latest response of each Date second", function()
      local c = new_client()
      local dates, distinct = {}, 0
      for _ = 1, 40 do
        local res = assert(c:get("/api/v2/organizations/me"))
        if not dates[res.headers.date] then dates[res.headers.date] = true; distinct = distinct + 1 end
      end
      local fed = c:stats().skew_samples
      assert.is_true(fed >= distinct and fed <= 2 * distinct - 1, fed .. " fed for " .. distinct .. " seconds")
      -- the latest response is held back unless it was the first of a new second
      local held = c._held_send and 1 or 0
      assert.is_true(held == 1 or distinct > 1)
      local skew, uncertainty = c:skew()                    -- feeds the held-back response
      assert.equal(fed + held, c:stats().skew_samples)
      assert.is_true(math.abs(skew) <= uncertainty + 0.002, skew .. " ± " .. uncertainty)
      c:skew()                                              -- nothing held any more
      assert.equal(fed + held, c:stats().skew_samples)
      c:close()
    end)

    it("closed: raises as the policy path does", function()
      local c = new_client()
      assert(c:token())
      c:close()
      assert.has_error(function() c:token() end, "skewguard.token: used after close()")
    end)

    it("request() sends the fresh token and renews after a 401 invalidates it", function()
      local c = new_client()
      local res = assert(c:get("/api/v2/organizations/me"))
      assert.equal(200, res.status)
      assert.equal(1, s:counter("token_requests"))
      for _ = 1, 5 do assert.equal(200, assert(c:get("/api/v2/organizations/me")).status) end
      assert.equal(1, s:counter("token_requests"))
      s:control { revoke_all = true }
      res = assert(c:get("/api/v2/organizations/me"))
      assert.equal(200, res.status)
      assert.equal(2, s:counter("token_requests"))
      c:close()
    end)
  end)
end)
