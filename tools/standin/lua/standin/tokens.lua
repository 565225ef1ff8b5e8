-- Access and refresh tokens, authorization codes. Access tokens are opaque random
-- strings or HS256 JWTs; every time in them comes from the skewed server clock.
local cjson = require "cjson.safe"
local crypto = require "standin.crypto"
local state = require "standin.state"

local tokens = ngx.shared.standin_tokens
local grants = ngx.shared.standin_grants
local issued = ngx.shared.standin_issued

local JWT_KEY = "standin-test-signing-key"
local ISSUER = "https://login.standin.invalid/"
-- Expired tokens stay known this long (local seconds) so they answer
-- credentials.expired rather than bad.credentials.
local KEEP_AFTER_EXPIRY = 3600

local M = {}

-- Every token and code handed out since the last reset, in order, so secrets
-- audits can look for them in a client's logs and errors (GET /__standin/issued).
local function remember(kind, value)
  local n = issued:incr("n", 1, 0)
  issued:set(n, kind .. " " .. value)
end

function M.issued()
  local out = { access_tokens = {}, refresh_tokens = {}, codes = {} }
  local lists = { access = out.access_tokens, refresh = out.refresh_tokens, code = out.codes }
  for i = 1, issued:get("n") or 0 do
    local entry = issued:get(i)
    local kind, value = (entry or ""):match("^(%S+) (.*)$")
    if kind then table.insert(lists[kind], value) end
  end
  return out
end

function M.forget_issued() issued:flush_all() end

local function jwt(claims)
  local header = crypto.b64url('{"alg":"HS256","typ":"JWT"}')
  local payload = crypto.b64url(cjson.encode(claims))
  local signing_input = header .. "." .. payload
  return signing_input .. "." .. crypto.b64url(crypto.hmac_sha256(JWT_KEY, signing_input))
end

-- Mints an access token; returns the token and its lifetime (expires_in).
function M.issue(client_id, grant)
  local lifetime = state.get("lifetime")
  local now = state.server_now()
  local token, exp
  if state.get("jwt") then
    local iat = math.floor(now)
    exp = iat + lifetime
    token = jwt { iss = ISSUER, sub = client_id, iat = iat, nbf = iat, exp = exp, jti = crypto.uuid() }
  else
    token = crypto.token(32)
    exp = now + lifetime
  end
  local record = cjson.encode {
    client = client_id, grant = grant, exp = exp, issued = now,
    gen = state.get("revoke_generation") or 0,
  }
  tokens:set(token, record, lifetime + KEEP_AFTER_EXPIRY)
  remember("access", token)
  return token, lifetime
end

-- Checks a presented bearer token against the server clock.
-- Returns the record, or nil and a reason: "unknown", "revoked", "expired", "idle".
function M.check(token, preserve_idle)
  local raw = tokens:get(token)
  if not raw then return nil, "unknown" end
  local record = cjson.decode(raw)
  if record.revoked or record.gen < (state.get("revoke_generation") or 0) then
    return nil, "revoked"
  end
  local now = state.server_now()
  if now >= record.exp then return nil, "expired" end
  local idle = state.get("idle_timeout")
  if idle > 0 then
    local last = tokens:get("idle:" .. token) or record.issued
    if now - last >= idle then return nil, "idle" end
    if not preserve_idle then tokens:set("idle:" .. token, now, idle + KEEP_AFTER_EXPIRY) end
  end
  return record
end

function M.revoke(token)
  local raw = tokens:get(token)
  if not raw then return end
  local record = cjson.decode(raw)
  record.revoked = true
  tokens:set(token, cjson.encode(record), KEEP_AFTER_EXPIRY)
end

function M.revoke_all()
  ngx.shared.standin_state:incr("revoke_generation", 1, 0)
  grants:flush_all()
end

function M.forget_all()
  tokens:flush_all()
  grants:flush_all()
end

-- Refresh tokens rotate: each may be redeemed once.
function M.issue_refresh(client_id)
  local refresh = crypto.token(32)
  grants:set("rt:" .. refresh, client_id, 30 * 86400)
  remember("refresh", refresh)
  return refresh
end

function M.redeem_refresh(refresh, client_id)
  local owner = grants:get("rt:" .. refresh)
  if owner ~= client_id then return false end
  -- add() is atomic across workers: only one concurrent redemption wins.
  if not grants:add("used:rt:" .. refresh, true, 30 * 86400) then return false end
  grants:delete("rt:" .. refresh)
  return true
end

function M.issue_code(info)
  local code = crypto.token(18)
  grants:set("code:" .. code, cjson.encode(info), 600)
  remember("code", code)
  return code
end

function M.redeem_code(code)
  local raw = grants:get("code:" .. code)
  if not raw then return nil end
  if not grants:add("used:code:" .. code, true, 600) then return nil end
  grants:delete("code:" .. code)
  return cjson.decode(raw)
end

return M
