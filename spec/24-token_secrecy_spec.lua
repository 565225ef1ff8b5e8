-- Secrets never leak: all log output at debug level across token scenarios,
-- every error string and every tostring, searched for the client secret (plain,
-- form-encoded and inside the Basic header) and every access and refresh token
-- the stand-in issued.
local token = require "skewguard.token"
local curl = require "skewguard.transport.curl"
local standin = require "support.standin"
local nginx = require "support.loopback_nginx"
local cjson = require "cjson"

local SECRET = "Zq9:s3cr+et%&ünïcode"

describe("secrets in logs and errors", function()
  local s
  setup(function() s = standin.start({ client_secret = SECRET }) end)
  teardown(function() if s then s:stop() end end)

  it("never appear across login, renewal, rotation, PKCE and failures", function()
    local lines, texts, secrets = {}, {}, { SECRET }
    local function logger(level, message, fields)
      local parts = { level, message }
      for k, v in pairs(fields or {}) do parts[#parts + 1] = tostring(k) .. "=" .. tostring(v) end
      lines[#lines + 1] = table.concat(parts, " ")
    end
    local answers = {}
    local function recording()
      local inner = curl.new({ timeout = 5 })
      local t = setmetatable({}, { __index = inner })
      function t.request(_, req)
        local res, err = inner:request(req)
        if res then answers[#answers + 1] = res.body end
        if err then texts[#texts + 1] = tostring(err) end
        return res, err
      end
      return t
    end
    local function new(opts)
      local o = { client_id = "test-client", client_secret = SECRET, token_url = s.url .. "/oauth/token",
        transport = recording(), logger = logger, log_level = "debug" }
      for k, v in pairs(opts) do o[k] = v end
      if o.grant == "pkce" then o.client_secret = nil end
      return token.new(o)
    end
    local function note(...)
      for i = 1, select("#", ...) do texts[#texts + 1] = tostring((select(i, ...))) end
    end
    -- get() hands out the token itself on success: keep only what follows it
    local function note_get(_, ...) note(...) end

    -- client credentials: login, renewals, endpoint failures, invalidation
    local cc = new({})
    note_get(cc:get())
    note(cc:refresh())
    for _, scenario in ipairs({ { kind = "status", status = 503, count = 1 }, { kind = "rate_limit", count = 1 },
      { kind = "malformed", count = 1 } }) do
      s:control({ token = scenario })
      note(cc:refresh())
    end
    local _, gen = cc:get()
    note(cc:invalidate(gen))
    note_get(cc:get())
    note(cc, cc.tok, cc:info().fingerprint)
    local _, headers = cc.tok:client_credentials_request()
    secrets[#secrets + 1] = headers.Authorization:match("^Basic (.+)$")
    secrets[#secrets + 1] = "s3cr%2Bet%25%26%C3%BCn%C3%AFcode"

    -- authorization code with refresh-token rotation, and a bad code
    local ac = new({ grant = "authorization_code" })
    local redirect = "http://127.0.0.1:9/cb"
    local t = curl.new()
    local res = assert(t:request({ url = ac:authorize_url({ redirect_uri = redirect }) }))
    note(ac:login({ code = res.headers.location:match("code=([^&]+)"), redirect_uri = redirect }))
    note(ac:refresh())
    note(ac:refresh())
    note(ac:login({ code = "not-a-code", redirect_uri = redirect }))
    note(ac, ac.tok)

    -- PKCE
    local core = require "skewguard.core"
    local verifier = core.pkce_verifier(64)
    local pk = new({ grant = "pkce", client_id = "test-public-client" })
    res = assert(t:request({ url = pk:authorize_url({ redirect_uri = redirect,
      code_challenge = core.pkce_challenge(verifier) }) }))
    note(pk:login({ code = res.headers.location:match("code=([^&]+)"), code_verifier = verifier,
      redirect_uri = redirect }))
    note(pk:refresh(), pk)

    -- transport failure
    local down = new({ token_url = "http://127.0.0.1:" .. nginx.free_port() .. "/oauth/token" })
    note_get(down:get())
    t:close()

    for _, body in ipairs(answers) do
      local ok, a = pcall(cjson.decode, body)
      if ok and type(a) == "table" then
        if type(a.access_token) == "string" and #a.access_token > 1 then secrets[#secrets + 1] = a.access_token end
        if type(a.refresh_token) == "string" then secrets[#secrets + 1] = a.refresh_token end
      end
    end
    local refresh_tokens = 0
    for _, body in ipairs(answers) do
      if body:find('"refresh_token"', 1, true) then refresh_tokens = refresh_tokens + 1 end
    end
    assert.is_true(refresh_tokens >= 3, "the scenarios issued refresh tokens")
    assert.is_true(#secrets >= 10, "secrets collected: " .. #secrets)
    assert.is_true(#lines >= 15, "debug logging happened: " .. #lines)
    local all = table.concat(lines, "\n") .. "\n" .. table.concat(texts, "\n")
    assert.truthy(all:find("token stored", 1, true))
    assert.truthy(all:find("fingerprint=%x%x%x%x%x%x%x%x"))
    for _, secret in ipairs(secrets) do
      assert.is_nil(all:find(secret, 1, true), "a secret leaked (fingerprint " .. core.fingerprint(secret) .. ")")
      -- also a long piece of it, in case something printed a truncated copy
      if #secret >= 24 then assert.is_nil(all:find(secret:sub(5, 20), 1, true)) end
    end
    cc:close(); ac:close(); pk:close(); down:close()
  end)
end)
