-- The token userdata with injected time: windows, rejection, single flight,
-- compare-and-swap invalidation, server-time conversion and request builders.
local core = require "skewguard.core"
local b64 = require "support.b64"

local SECRET = "s3cr:et+with%odd&chars é"
local ID = "client id:1"

local function new_token(opts)
  opts = opts or {}
  opts.client_id = opts.client_id or ID
  if opts.client_secret == nil then opts.client_secret = SECRET end
  return core.token(opts)
end

local function answer(fields)
  local a = { access_token = "AT-one", token_type = "bearer", expires_in = 3600 }
  for k, v in pairs(fields or {}) do a[k] = v end
  return a
end

describe("token userdata", function()
  describe("states and windows", function()
    it("goes fresh, advisory, mandatory, expired as the monotonic clock advances", function()
      local tok = new_token({ buffer = 60 })
      assert.equal("empty", (tok:state(1000)))
      assert.equal(1, tok:accept(answer(), 1000, { now = 1000.2 }))
      local info = tok:info(1000.2)
      assert.equal(3600, info.lifetime)
      assert.equal(60, info.mandatory)
      -- advisory = buffer + min(10% of lifetime, 900) * (1 - 0.2 * U)
      assert.is_true(info.advisory >= 60 + 360 * 0.8 and info.advisory <= 60 + 360, info.advisory)
      local state, left = tok:state(1000.5)
      assert.equal("fresh", state)
      assert.near(3599.5, left, 1e-9)
      assert.equal("advisory", (tok:state(4600 - info.advisory + 1)))
      assert.equal("mandatory", (tok:state(4600 - 59)))
      assert.equal("expired", (tok:state(4600)))
    end)

    it("scales the advisory window with the lifetime, capped at 900 s", function()
      local long = new_token({ buffer = 60 })
      long:accept(answer({ expires_in = 86400 }), 0, { now = 0 })
      local a = long:info(0).advisory
      assert.is_true(a >= 60 + 900 * 0.8 and a <= 60 + 900, a)
      local short = new_token({ buffer = 60 })
      short:accept(answer({ expires_in = 300 }), 0, { now = 0 })
      local b = short:info(0).advisory
      assert.is_true(b >= 60 + 30 * 0.8 and b <= 60 + 30, b)
    end)

    it("jitters the advisory window per token", function()
      local tok = new_token()
      local seen = {}
      for i = 1, 20 do
        tok:accept(answer({ access_token = "AT" .. i }), 0, { now = 0 })
        seen[tok:info(0).advisory] = true
      end
      local n = 0
      for _ in pairs(seen) do n = n + 1 end
      assert.is_true(n >= 15, "distinct advisory windows: " .. n)
    end)

    it("keeps a short-lived token usable when buffer exceeds its lifetime", function()
      local tok = new_token({ buffer = 60 })
      tok:accept(answer({ expires_in = 5 }), 10, { now = 10.01 })
      local info = tok:info(10.01)
      assert.equal(2.5, info.mandatory)
      assert.is_true(info.advisory > 2.5 and info.advisory <= 3.0)
      assert.equal("fresh", (tok:state(10.01)))
      assert.equal("advisory", (tok:state(12.2)))
      assert.equal("mandatory", (tok:state(12.6)))
      assert.equal("expired", (tok:state(15)))
    end)

    it("anchors the deadline on the send time, not the receive time", function()
      local tok = new_token()
      tok:accept(answer({ expires_in = 100 }), 50, { now = 53 })
      assert.equal(150, tok:info(53).deadline)
      assert.equal("expired", (tok:state(150)))
    end)
  end)

  describe("accept", function()
    local function rejects(fields, pattern, now)
      local tok = new_token()
      assert.equal(1, tok:accept(answer({ access_token = "GOOD" }), 0, { now = 0 }))
      local a = answer({ access_token = "NEW" })
      for k, v in pairs(fields) do
        if v == "nil" then a[k] = nil else a[k] = v end
      end
      local ok, msg, kind = tok:accept(a, 1, { now = now or 1 })
      assert.is_nil(ok)
      assert.equal("token", kind)
      assert.truthy(msg:find(pattern), msg)
      assert.is_nil(msg:find("NEW", 1, true))
      local at, state = tok:access_token(now or 1)
      assert.equal("GOOD", at)
      assert.equal("fresh", state)
      assert.equal(1, tok:generation())
    end

    it("rejects a missing, empty or non-string access_token and keeps the old one", function()
      rejects({ access_token = "nil" }, "no access_token")
      rejects({ access_token = "" }, "empty")
      rejects({ access_token = 42 }, "no access_token")
      rejects({ access_token = "a b" }, "control")
      rejects({ access_token = "a\r\nX-Evil: 1" }, "control")
    end)

    it("rejects a missing, non-positive, non-finite or absurd expires_in", function()
      rejects({ expires_in = "nil" }, "no expires_in")
      rejects({ expires_in = 0 }, "not a usable lifetime")
      rejects({ expires_in = -5 }, "not a usable lifetime")
      rejects({ expires_in = 0 / 0 }, "not a usable lifetime")
      rejects({ expires_in = math.huge }, "not a usable lifetime")
      rejects({ expires_in = 11 * 365 * 86400 }, "not a usable lifetime")
      rejects({ expires_in = "soon" }, "not a number")
      rejects({ expires_in = {} }, "not a number")
    end)

    it("rejects an answer that is already expired when it arrives", function()
      rejects({ expires_in = 0.5 }, "already expired", 2)
    end)

    it("rejects a token type other than bearer", function()
      rejects({ token_type = "mac" }, "token_type")
      rejects({ token_type = 7 }, "token_type")
    end)

    it("rejects a bad refresh_token", function()
      rejects({ refresh_token = "" }, "refresh_token")
      rejects({ refresh_token = 5 }, "refresh_token")
    end)

    it("accepts a numeric string expires_in and any case of Bearer", function()
      local tok = new_token()
      assert.equal(1, tok:accept(answer({ expires_in = "120", token_type = "BEARER" }), 0, { now = 0 }))
      assert.equal(120, tok:info(0).lifetime)
      assert.equal("Bearer AT-one", tok:authorization())
    end)

    it("changes the generation with every new token", function()
      local tok = new_token()
      assert.equal(0, tok:generation())
      assert.equal(1, tok:accept(answer(), 0, { now = 0 }))
      assert.equal(2, tok:accept(answer({ access_token = "AT-two" }), 1, { now = 1 }))
      assert.equal(2, tok:generation())
      assert.equal("AT-two", (tok:access_token(1)))
    end)

    it("replaces the refresh token with the newest and keeps it when an answer has none", function()
      local tok = new_token()
      assert.is_false(tok:has_refresh_token())
      local none, msg, kind = tok:refresh_request()
      assert.is_nil(none)
      assert.equal("token", kind)
      assert.truthy(msg:find("no refresh token"))
      tok:accept(answer({ refresh_token = "RT-1" }), 0, { now = 0 })
      tok:accept(answer({ refresh_token = "RT-2" }), 1, { now = 1 })
      assert.equal("grant_type=refresh_token&refresh_token=RT-2", (tok:refresh_request()))
      tok:accept(answer(), 2, { now = 2 })
      assert.equal("grant_type=refresh_token&refresh_token=RT-2", (tok:refresh_request()))
      tok:forget_refresh_token()
      assert.is_false(tok:has_refresh_token())
    end)
  end)

  describe("server times (JWT exp and nbf)", function()
    -- the server is 300 s ahead: skew = local - server = -300, known to +-0.5 s
    local wall0, mono0 = 1.7e9, 5000
    local skew_opts = { now = mono0 + 0.05, t_send_wall = wall0, skew_lo = -300.5, skew_hi = -299.5 }

    it("expires the token as early as the skew interval allows", function()
      local tok = new_token()
      local server_send = wall0 + 300
      skew_opts.exp = server_send + 1000
      skew_opts.nbf = nil
      tok:accept(answer({ expires_in = 3600 }), mono0, skew_opts)
      -- exp + skew_lo in local wall, mapped to monotonic through the send pair
      assert.near(mono0 + 1000 - 0.5, tok:info(mono0).deadline, 1e-6)
      assert.equal(server_send + 1000, tok:info(mono0).exp)
    end)

    it("keeps the relative deadline when exp is later", function()
      local tok = new_token()
      skew_opts.exp = wall0 + 300 + 7200
      tok:accept(answer({ expires_in = 3600 }), mono0, skew_opts)
      assert.near(mono0 + 3600, tok:info(mono0).deadline, 1e-6)
    end)

    it("makes the token valid as late as the interval allows", function()
      local tok = new_token()
      skew_opts.exp = nil
      skew_opts.nbf = wall0 + 300 + 2
      tok:accept(answer({ expires_in = 3600 }), mono0, skew_opts)
      assert.near(mono0 + 2.5, tok:info(mono0).valid_from, 1e-6)
      assert.equal("not_yet_valid", (tok:state(mono0 + 2.4)))
      assert.equal("fresh", (tok:state(mono0 + 2.6)))
    end)

    it("converts through an attached estimator", function()
      local est = require("skewguard.skew").new({ wall = function() return wall0 end })
      local tok = new_token()
      tok:attach_estimator(est)
      -- no samples yet: server times are not used
      tok:accept(answer({ expires_in = 3600 }), mono0, { now = mono0, t_send_wall = wall0, exp = wall0 })
      assert.near(mono0 + 3600, tok:info(mono0).deadline, 1e-6)
      est:observe_interval(-300.5, -299.5, "test", wall0)
      tok:accept(answer({ expires_in = 3600 }), mono0,
        { now = mono0, t_send_wall = wall0, exp = wall0 + 300 + 1000, nbf = wall0 + 300 + 2 })
      assert.near(mono0 + 1000 - 0.5, tok:info(mono0).deadline, 1e-6)
      assert.near(mono0 + 2 - 0.5 + 1, tok:info(mono0).valid_from, 1e-6)
      tok:attach_estimator(nil)
      tok:accept(answer({ expires_in = 3600 }), mono0, { now = mono0, t_send_wall = wall0, exp = wall0 })
      assert.near(mono0 + 3600, tok:info(mono0).deadline, 1e-6)
      assert.has_error(function() tok:attach_estimator({}) end)
    end)

    it("ignores server times while the skew is unknown", function()
      local tok = new_token()
      tok:accept(answer({ expires_in = 3600 }), mono0,
        { now = mono0, t_send_wall = wall0, exp = wall0 - 10, nbf = wall0 + 100 })
      assert.equal("fresh", (tok:state(mono0 + 1)))
      assert.equal(wall0 - 10, tok:info(mono0).exp)
    end)

    it("rejects a token whose exp is already past locally", function()
      local tok = new_token()
      local ok, msg, kind = tok:accept(answer({ expires_in = 3600 }), mono0,
        { now = mono0 + 0.05, t_send_wall = wall0, skew_lo = 10, skew_hi = 11, exp = wall0 - 20 })
      assert.is_nil(ok)
      assert.equal("token", kind)
      assert.truthy(msg:find("already expired"))
    end)

    it("rejects inconsistent skew bounds as misuse", function()
      local tok = new_token()
      assert.has_error(function()
        tok:accept(answer(), 0, { now = 0, skew_lo = 1, skew_hi = 0 })
      end)
    end)

    it("does not read the wall clock after accepting: a wall step cannot move the deadline", function()
      local tok = new_token()
      tok:accept(answer({ expires_in = 100 }), mono0, { now = mono0, t_send_wall = wall0,
        skew_lo = -0.1, skew_hi = 0.1, exp = wall0 + 50 })
      local d = tok:info(mono0).deadline
      -- state() takes only monotonic time; the same instants give the same answers
      assert.equal("fresh", (tok:state(mono0 + 10)))
      assert.equal("expired", (tok:state(d)))
      assert.near(mono0 + 49.9, d, 1e-6)
    end)
  end)

  describe("invalidate", function()
    it("drops the token only if the rejected generation is still current", function()
      local tok = new_token()
      local g1 = tok:accept(answer({ refresh_token = "RT" }), 0, { now = 0 })
      local g2 = tok:accept(answer({ access_token = "AT-two" }), 1, { now = 1 })
      assert.is_false(tok:invalidate(g1))
      assert.equal("AT-two", (tok:access_token(1)))
      assert.is_true(tok:invalidate(g2))
      assert.is_nil((tok:access_token(1)))
      assert.equal("empty", (tok:state(1)))
      assert.is_false(tok:invalidate(g2))
      assert.is_true(tok:has_refresh_token(), "a 401 does not condemn the refresh token")
      local none, _, kind = tok:authorization()
      assert.is_nil(none)
      assert.equal("token", kind)
    end)
  end)

  describe("single flight", function()
    it("lets one caller own the refresh until it ends or goes stale", function()
      local tok = new_token({ stale_refresh = 10 })
      assert.is_false(tok:refreshing())
      assert.is_true(tok:begin_refresh(100))
      local owned, age = tok:begin_refresh(101)
      assert.is_false(owned)
      assert.equal(1, age)
      local busy, since = tok:refreshing()
      assert.is_true(busy)
      assert.equal(100, since)
      tok:end_refresh()
      assert.is_true(tok:begin_refresh(102))
      assert.is_true(tok:begin_refresh(112.5), "a crashed owner's marker is taken over")
    end)
  end)

  describe("request builders", function()
    local function basic_parts(headers)
      local enc = headers.Authorization:match("^Basic (.+)$")
      local plain = b64.decode(enc)
      local id, secret = plain:match("^([^:]*):([^:]*)$")
      return id, secret
    end

    it("builds client credentials with form-encoded Basic auth and no scope", function()
      local tok = new_token()
      local body, headers = tok:client_credentials_request()
      assert.equal("grant_type=client_credentials", body)
      assert.equal("application/x-www-form-urlencoded", headers["Content-Type"])
      local id, secret = basic_parts(headers)
      assert.equal("client+id%3A1", id)
      assert.equal("s3cr%3Aet%2Bwith%25odd%26chars+%C3%A9", secret)
      assert.equal(SECRET, b64.form_decode(secret))
      assert.equal(ID, b64.form_decode(id))
      assert.equal("grant_type=client_credentials&scope=a+b%3Ac",
        (tok:client_credentials_request({ scope = "a b:c" })))
    end)

    it("builds the refresh and authorization-code requests with Basic auth", function()
      local tok = new_token()
      tok:accept(answer({ refresh_token = "r+t/=%" }), 0, { now = 0 })
      local body, headers = tok:refresh_request()
      assert.equal("grant_type=refresh_token&refresh_token=r%2Bt%2F%3D%25", body)
      assert.equal(SECRET, b64.form_decode(select(2, basic_parts(headers))))
      body, headers = tok:authorization_code_request({ code = "c&d", redirect_uri = "http://h:8/cb?x=1" })
      assert.equal("grant_type=authorization_code&code=c%26d&redirect_uri=http%3A%2F%2Fh%3A8%2Fcb%3Fx%3D1", body)
      assert.truthy(headers.Authorization)
    end)

    it("builds the PKCE exchange without a secret", function()
      local tok = new_token({ client_secret = false })
      local verifier = string.rep("a", 43) .. "-._~"
      local body, headers = tok:pkce_request({ code = "the code", code_verifier = verifier,
        redirect_uri = "https://app.example/cb" })
      assert.equal("grant_type=authorization_code&code=the+code&code_verifier=" .. verifier ..
        "&client_id=client+id%3A1&redirect_uri=https%3A%2F%2Fapp.example%2Fcb", body)
      assert.is_nil(headers.Authorization)
      assert.has_error(function() tok:client_credentials_request() end)
      assert.has_error(function()
        tok:pkce_request({ code = "c", code_verifier = "short", redirect_uri = "x" })
      end)
      assert.has_error(function()
        tok:pkce_request({ code = "c", code_verifier = string.rep("a", 42) .. "+", redirect_uri = "x" })
      end)
    end)

    it("builds the PKCE authorize URL exactly", function()
      local tok = new_token({ client_id = "b2b0f5c6-1234", client_secret = false })
      local url = tok:authorize_url({
        authorize_url = "https://login.mypurecloud.com/oauth/authorize",
        redirect_uri = "http://localhost:8085/callback",
        code_challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        state = "x y&z", org = "my org", provider = "okta", prompt = "login" })
      assert.equal("https://login.mypurecloud.com/oauth/authorize?response_type=code" ..
        "&client_id=b2b0f5c6-1234&redirect_uri=http%3A%2F%2Flocalhost%3A8085%2Fcallback" ..
        "&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256" ..
        "&state=x%20y%26z&org=my%20org&provider=okta&prompt=login", url)
      assert.equal("https://h/a?x=1&response_type=code&client_id=b2b0f5c6-1234&redirect_uri=r" ..
        "&code_challenge=c&code_challenge_method=S256",
        tok:authorize_url({ authorize_url = "https://h/a?x=1", redirect_uri = "r", code_challenge = "c" }))
    end)

    it("leaves out the challenge for a confidential client that sends none", function()
      local tok = new_token({ client_id = "c" })
      assert.equal("https://h/a?response_type=code&client_id=c&redirect_uri=r",
        tok:authorize_url({ authorize_url = "https://h/a", redirect_uri = "r" }))
    end)

    it("raises on missing fields, which is misuse", function()
      local tok = new_token()
      assert.has_error(function() tok:authorization_code_request({ code = "c" }) end)
      assert.has_error(function() core.token({ client_secret = "x" }) end)
      assert.has_error(function() core.token({ client_id = "x", buffer = -1 }) end)
    end)
  end)

  describe("secrets", function()
    it("never shows secret material in tostring", function()
      local tok = new_token()
      assert.equal("skewguard.token{empty}", tostring(tok))
      tok:accept(answer({ access_token = "SUPERSECRETTOKEN", refresh_token = "REFRESHSECRET" }),
        core.monotonic(), {})
      local s = tostring(tok)
      assert.truthy(s:find("^skewguard%.token{Bearer, fresh, fp=%x%x%x%x%x%x%x%x, %d+%.%ds left, gen=1}$"), s)
      for _, secret in ipairs({ "SUPERSECRET", "REFRESHSECRET", "s3cr", ID }) do
        assert.is_nil(s:find(secret, 1, true))
      end
      assert.equal(tok:info().fingerprint, s:match("fp=(%x+)"))
    end)

    it("closes idempotently and refuses use after close", function()
      local tok = new_token()
      tok:accept(answer(), 0, { now = 0 })
      tok:close()
      tok:close()
      assert.equal("skewguard.token{closed}", tostring(tok))
      assert.has_error(function() tok:state(0) end)
      assert.has_error(function() tok:client_credentials_request() end)
    end)

    it("replaces credentials", function()
      local tok = new_token()
      tok:set_credentials({ client_id = "new", client_secret = "other" })
      local _, headers = tok:client_credentials_request()
      assert.equal("new:other", b64.decode(headers.Authorization:match("^Basic (.+)$")))
    end)
  end)
end)
