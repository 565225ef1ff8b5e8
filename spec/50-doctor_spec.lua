-- The doctor, run as users run it (bin/skewguard-doctor --json), against the stand-in
-- and a real SNTP responder on loopback, with the server clocks set off.
local standin = require "support.standin"
local sntp_server = require "support.sntp_server"
local cjson = require "cjson"

local script = require "support.script"

local function doctor(args, env) return script.run("bin/skewguard-doctor", args, env, true) end

describe("skewguard-doctor", function()
  local s, ntp

  setup(function()
    s = standin.start { lifetime = 600 }
    ntp = sntp_server.start()
  end)
  teardown(function()
    if s then s:stop() end
    if ntp then ntp:stop() end
  end)

  local creds = "GENESYS_CLIENT_ID=test-client GENESYS_CLIENT_SECRET=test-secret"

  local cases = {
    { name = "healthy: both clocks right", server = 0, utc = 0, exit = 0, status = "healthy" },
    { name = "your clock: stand-in and SNTP both 7.3 s ahead", server = 7.3, utc = 7.3, exit = 1,
      status = "problem", culprit = "local" },
    { name = "the server's clock: stand-in 90 s behind, SNTP right", server = -90, utc = 0, exit = 1,
      status = "problem", culprit = "server" },
  }

  for _, case in ipairs(cases) do
    it(case.name, function()
      s:reset()
      s:control { offset = case.server }
      ntp:set { offset = case.utc }
      local out, code = doctor(("--login-url %s --ntp 127.0.0.1:%d --json"):format(s.url, ntp.port), creds)
      local report = cjson.decode(out)
      assert.equal(case.exit, code)
      assert.equal(case.exit, report.exit_code)
      assert.equal(case.status, report.verdict.status)
      assert.equal(case.culprit, report.verdict.culprit)
      -- figures: each skew within its stated uncertainty of the truth (skew = local - server)
      local date = report.checks.date
      assert.is_true(math.abs(date.skew - (-case.server)) <= date.uncertainty + 1e-4,
        ("date skew %.6f ± %.6f, truth %.6f"):format(date.skew, date.uncertainty, -case.server))
      assert.is_true(date.uncertainty <= 0.005, "uncertainty " .. date.uncertainty)
      assert.is_true(date.probes <= 12)
      local sn = report.checks.sntp
      assert.is_true(math.abs(sn.skew - (-case.utc)) <= sn.uncertainty,
        ("sntp skew %.6f ± %.6f"):format(sn.skew, sn.uncertainty))
      assert.equal("ok", report.checks.login.status)
      assert.equal("ok", report.checks.smoke.status)
      assert.equal(600, report.checks.login.lifetime)
      if case.culprit then assert.is_true(#report.verdict.advice >= 1) end
      assert.is_nil(out:find("test-secret", 1, true))
    end)
  end

  it("prints a line per check as it goes, and the advice", function()
    s:reset()
    s:control { offset = 7.3 }
    ntp:set { offset = 7.3 }
    local out = doctor(("--login-url %s --ntp 127.0.0.1:%d --probes 4"):format(s.url, ntp.port), creds)
    for _, name in ipairs({ "sntp", "date", "compare", "login", "smoke", "verdict" }) do
      assert.truthy(out:find("%] " .. name), name .. " line missing in:\n" .. out)
    end
    assert.truthy(out:find("YOUR clock is off", 1, true))
    assert.truthy(out:find("chronyc", 1, true))
  end)

  it("reports bad credentials as a problem, without quoting the secret", function()
    s:reset()
    local out = doctor(("--login-url %s --no-ntp --json --probes 2"):format(s.url),
      "GENESYS_CLIENT_ID=test-client GENESYS_CLIENT_SECRET=wrong-secret-123")
    local report = cjson.decode(out)
    assert.equal(1, report.exit_code)
    assert.equal("fail", report.checks.login.status)
    assert.equal("unauthorized", report.checks.login.error)
    assert.is_nil(out:find("wrong-secret-123", 1, true))
  end)

  it("exits 2 when it cannot run (nothing listening)", function()
    local out, code = doctor("--login-url http://127.0.0.1:9 --no-ntp --json --timeout 1", creds)
    local report = cjson.decode(out)
    assert.equal(2, report.exit_code)
    assert.equal(2, code)
    assert.equal("error", report.verdict.status)
  end)

  it("exits 2 on bad arguments", function()
    local _, code = doctor("--bogus")
    assert.equal(2, code)
    local out, code2 = doctor("--region eu-west-1 --login-url http://x")
    assert.equal(2, code2)
    assert.equal("", out)
  end)
end)
