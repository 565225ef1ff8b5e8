-- The examples run as users run them, against the stand-in.
local standin = require "support.standin"

local run = require("support.script").run

describe("examples", function()
  local s
  setup(function() s = standin.start() end)
  teardown(function() if s then s:stop() end end)
  before_each(function() s:reset() end)

  it("list_queues.lua lists all 57 queues across pages", function()
    local out, code = run("examples/list_queues.lua", s.url,
      "GENESYS_CLIENT_ID=test-client GENESYS_CLIENT_SECRET=test-secret")
    assert.equal(0, code, out)
    assert.truthy(out:find("57 queues in 3 requests", 1, true), out)
    assert.is_nil(out:find("test-secret", 1, true))
  end)

  it("pkce_login.lua completes the browser flow and calls the API without a secret", function()
    -- the "browser": curl follows the stand-in's 302 to the example's listener
    local out, code = run("examples/pkce_login.lua", s.url .. " --browser 'env -u LD_PRELOAD curl -sL --max-time 5'",
      "GENESYS_CLIENT_ID=test-public-client")
    assert.equal(0, code, out)
    assert.truthy(out:find("code_challenge_method=S256", 1, true), out)
    assert.truthy(out:find("logged in; GET /api/v2/tokens/me -> 200", 1, true), out)
    assert.equal(1, s:counter("token_pkce"))
    assert.equal(1, s:counter("authorize_requests"))
  end)
end)
