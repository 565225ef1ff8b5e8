-- The Genesys client against the stand-in: every scenario of issue 6, each
-- asserting the outcome and the stand-in's own counters.
local standin = require "support.standin"
local genesys = require "skewguard.genesys"
local core = require "skewguard.core"

describe("genesys client", function()
  local s

  setup(function() s = standin.start { lifetime = 3600 } end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  local function new_client(extra)
    local opts = { login_url = s.url, client_id = s.client_id, client_secret = s.client_secret, timeout = 3 }
    for k, v in pairs(extra or {}) do opts[k] = v end
    return genesys.new(opts)
  end

  describe("construction", function()
    it("maps a region to Genesys's login and API hosts", function()
      assert.same({ "https://login.mypurecloud.ie", "https://api.mypurecloud.ie" },
        { genesys.hosts("eu-west-1") })
      assert.same({ "https://login.example.pure.cloud", "https://api.example.pure.cloud" },
        { genesys.hosts("example.pure.cloud") })
      assert.has_error(function() genesys.hosts("not a domain") end)
    end)

    it("raises on unknown options and wrong types (programming errors)", function()
      assert.has_error(function() new_client({ bufer = 60 }) end, "skewguard.genesys.new: unknown option bufer")
      assert.has_error(function() new_client({ buffer = "60" }) end)
      assert.has_error(function() genesys.new({ client_id = "x", client_secret = "y" }) end)
      assert.has_error(function() new_client({ region = "us-east-1" }) end)
    end)
  end)

  it("logs in lazily and makes an authenticated call", function()
    local c = new_client()
    local res, err = c:get("/api/v2/tokens/me", { query = { preserveIdleTTL = "true" } })
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.truthy(res.correlation_id)
    assert.equal("table", type(res:json()))
    assert.equal(1, s:counter("token_requests"))
    assert.equal(1, c:stats().token_requests)
  end)

  it("scenario: token expiring during a run of requests — zero 401s served", function()
    s:control { lifetime = 2 }
    local c = new_client()
    local t0 = core.monotonic()
    local n = 0
    while core.monotonic() - t0 < 4.5 do
      local res, err = c:get("/api/v2/organizations/me")
      assert.is_nil(err)
      assert.equal(200, res.status)
      n = n + 1
      core.sleep(0.05)
    end
    assert.is_true(n > 40)
    assert.equal(0, s:counter("api_401"))
    assert.is_true(s:counter("token_requests") >= 3, "renewed across lifetimes")
    assert.equal(0, c:stats().retries_401)
  end)

  it("scenario: token revoked mid-run — exactly one extra token request", function()
    local c = new_client()
    for _ = 1, 5 do assert.truthy(c:get("/api/v2/organizations/me")) end
    assert.equal(1, s:counter("token_requests"))
    s:control { revoke_all = true }
    for _ = 1, 5 do
      local res, err = c:get("/api/v2/organizations/me")
      assert.is_nil(err)
      assert.equal(200, res.status)
    end
    assert.equal(2, s:counter("token_requests"))
    assert.equal(1, s:counter("api_401_revoked"))
    assert.equal(1, c:stats().retries_401)
  end)

  it("scenario: every API call 401 with the server's clock 400 s off — clock_skew", function()
    s:control { offset = 400, api_401_all = true }
    local c = new_client()
    local res, err = c:get("/api/v2/organizations/me")
    assert.is_nil(res)
    assert.equal("clock_skew", err.kind)
    assert.equal(401, err.status)
    assert.near(-400, err.skew, 1.5)
    assert.is_true(err.uncertainty < 1.5)
    assert.truthy(tostring(err):find("chrony", 1, true))
    assert.equal(2, s:counter("token_requests"))   -- renewed once, retried once
    assert.equal(2, s:counter("api_401"))
  end)

  it("scenario: every API call 401 with no offset — unauthorized with Genesys's code", function()
    s:control { api_401_all = true }
    local c = new_client()
    local res, err = c:get("/api/v2/organizations/me")
    assert.is_nil(res)
    assert.equal("unauthorized", err.kind)
    assert.truthy(err.code)
    assert.truthy(err.correlation_id)
    assert.equal(2, s:counter("api_401"))
  end)

  it("scenario: 403 — forbidden, never re-authenticates", function()
    s:control { api = { kind = "forbidden" } }
    local c = new_client()
    local res, err = c:get("/api/v2/organizations/me")
    assert.is_nil(res)
    assert.equal("forbidden", err.kind)
    assert.equal("missing.permissions", err.code)
    assert.equal(1, s:counter("token_requests"))
    assert.equal(1, s:counter("api_requests"))
  end)

  it("scenario: 429 with Retry-After: 2 twice, then 200 — waits, zero early retries", function()
    s:control { api = { kind = "rate_limit", retry_after = 2, count = 2 } }
    local c = new_client()
    local t0 = core.monotonic()
    local res, err = c:get("/api/v2/organizations/me")
    local elapsed = core.monotonic() - t0
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.is_true(elapsed >= 4, "elapsed " .. elapsed)
    assert.is_true(elapsed < 8, "elapsed " .. elapsed)
    assert.equal(2, s:counter("api_429"))
    assert.equal(0, s:counter("early_retries"))
    assert.equal(2, c:stats().retries_429)
  end)

  for _, offset in ipairs({ -300, 300 }) do
    it(("scenario: 429 with an HTTP-date Retry-After, server clock %+d s — waits the intended time")
      :format(offset), function()
      s:control { offset = offset, api = { kind = "rate_limit", retry_after_date = 2, count = 1 } }
      local c = new_client()
      assert.truthy(c:login())
      local t0 = core.monotonic()
      local res, err = c:get("/api/v2/organizations/me")
      local elapsed = core.monotonic() - t0
      assert.is_nil(err)
      assert.equal(200, res.status)
      -- the date is ceil(server time + 2): 2 to 3 s away, plus at most the estimate's width
      assert.is_true(elapsed >= 1.9, "elapsed " .. elapsed)
      assert.is_true(elapsed < 5, "elapsed " .. elapsed)
      assert.equal(0, s:counter("early_retries"))
    end)
  end

  it("scenario: Retry-After: 3600 — fails at once as rate_limited", function()
    s:control { api = { kind = "rate_limit", retry_after = 3600 } }
    local c = new_client()
    local t0 = core.monotonic()
    local res, err = c:get("/api/v2/organizations/me")
    assert.is_nil(res)
    assert.equal("rate_limited", err.kind)
    assert.equal(3600, err.retry_after)
    assert.is_true(core.monotonic() - t0 < 1)
  end)

  it("scenario: token endpoint rate-limited twice, then fine — backs off, no tight loop", function()
    s:control { token = { kind = "rate_limit", count = 2 } }
    local c = new_client()
    local t0 = core.monotonic()
    local res, err = c:get("/api/v2/organizations/me")
    local elapsed = core.monotonic() - t0
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.equal(3, s:counter("token_requests"))
    assert.equal(2, s:counter("token_rate_limited"))
    assert.is_true(elapsed >= 1, "backed off " .. elapsed)
  end)

  it("scenario: token endpoint 503 — bounded retries, then unavailable", function()
    s:control { token = { kind = "status", status = 503, count = 0 } }
    local c = new_client({ max_retries = 1 })
    local res, err = c:get("/api/v2/organizations/me")
    assert.is_nil(res)
    assert.equal("unavailable", err.kind)
    assert.equal(2, s:counter("token_requests"))
    assert.equal(0, s:counter("api_requests"))
  end)

  it("scenario: API 503 on GET — retried", function()
    s:control { api = { kind = "status", status = 503, count = 1 } }
    local c = new_client({ backoff_base = 0.05 })
    local res, err = c:get("/api/v2/organizations/me")
    assert.is_nil(err)
    assert.equal(200, res.status)
    assert.equal(2, s:counter("api_requests"))
    assert.equal(1, c:stats().retries_5xx)
  end)

  it("scenario: API 503 on POST — not retried", function()
    s:control { api = { kind = "status", status = 503, count = 1 } }
    local c = new_client({ backoff_base = 0.05 })
    local res, err = c:post("/api/v2/echo", { hello = "world" })
    assert.is_nil(res)
    assert.equal("http", err.kind)
    assert.equal(503, err.status)
    assert.equal(1, s:counter("api_requests"))
    assert.equal(0, c:stats().retries_5xx)
  end)

  it("scenario: server hangs — timeout error within the timeout", function()
    local c = new_client({ timeout = 1 })
    assert.truthy(c:login())
    s:control { api = { kind = "hang", seconds = 4 } }
    local t0 = core.monotonic()
    local res, err = c:get("/api/v2/organizations/me")
    local elapsed = core.monotonic() - t0
    assert.is_nil(res)
    assert.equal("timeout", err.kind)
    assert.is_true(elapsed < 1.8, "elapsed " .. elapsed)
  end)

  it("scenario: malformed JSON body — a typed protocol error from res:json()", function()
    s:control { api = { kind = "malformed" } }
    local c = new_client()
    local res = assert(c:get("/api/v2/organizations/me"))
    local value, err = res:json()
    assert.is_nil(value)
    assert.equal("protocol", err.kind)
    assert.equal(res.correlation_id, err.correlation_id)
  end)

  it("scenario: pagination over 57 items", function()
    s:control { queues_total = 57 }
    local c = new_client()
    local seen, n = {}, 0
    for item, err in c:paginate("/api/v2/routing/queues", { pageSize = 10 }) do
      assert.is_nil(err)
      assert.is_nil(seen[item.id])
      seen[item.id] = true
      n = n + 1
    end
    assert.equal(57, n)
    assert.equal(6, s:counter("api_requests"))
  end)

  it("scenario: pagination stops with the error of a failing page", function()
    s:control { queues_total = 57, api = { kind = "forbidden", count = 1, path = "/api/v2/routing" } }
    local c = new_client()
    local items, last_err = 0, nil
    for item, err in c:paginate("/api/v2/routing/queues", { pageSize = 10 }) do
      if item then items = items + 1 else last_err = err end
    end
    assert.equal(0, items)
    assert.equal("forbidden", last_err.kind)
  end)

  it("scenario: the client-side limiter holds requests to the limit in any window", function()
    -- 40 requests at 30 per 1 s window stand for 400 at 300 per 60 s
    local c = new_client({ rate_limit = 30, rate_window = 1 })
    assert.truthy(c:login())
    local sends = {}
    for _ = 1, 40 do
      local res = assert(c:get("/api/v2/organizations/me"))
      sends[#sends + 1] = res.t_send_mono
    end
    local worst, j = 0, 1
    for i = 1, #sends do
      while sends[i] - sends[j] >= 1 do j = j + 1 end
      if i - j + 1 > worst then worst = i - j + 1 end
    end
    assert.is_true(worst <= 30, "worst window " .. worst)
    assert.is_true(sends[#sends] - sends[1] >= 1)
    assert.is_true(c:stats().rate_limit_waits >= 1)
  end)

  it("scenario: Date-header skew — server 7.3 s ahead, 100 requests over a few seconds", function()
    s:control { offset = 7.3 }
    local c = new_client({ rate_limit = false })
    local seed = 7
    for _ = 1, 100 do
      assert.truthy(c:get("/api/v2/organizations/me"))
      seed = (seed * 16807) % 2147483647
      core.sleep(0.03 * seed / 2147483647)
    end
    local skew, uncertainty = c:skew()
    assert.is_true(math.abs(skew - (-7.3)) < 0.1, "skew " .. skew)
    assert.is_true(uncertainty < 0.1, "uncertainty " .. uncertainty)
    assert.is_true(math.abs(skew - (-7.3)) <= uncertainty + 0.003)
    assert.near(core.wall() + 7.3, c:server_now(), 0.1)   -- server_now = local - skew
  end)
end)
