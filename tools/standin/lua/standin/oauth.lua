-- The login host: POST /oauth/token and GET /oauth/authorize.
local crypto = require "standin.crypto"
local respond = require "standin.respond"
local state = require "standin.state"
local tokens = require "standin.tokens"

local M = {}

-- application/x-www-form-urlencoded decoding (RFC 6749 §2.3.1 applies it to Basic auth).
local function form_decode(s)
  return ngx.unescape_uri((s:gsub("%+", " ")))
end

-- Basic credentials, accepted raw or form-encoded (both forms are in use).
-- Returns the client id when they match the configured confidential client.
local function basic_client()
  local auth = ngx.var.http_authorization
  if not auth then return nil, "missing" end
  local b64 = auth:match("^[Bb][Aa][Ss][Ii][Cc]%s+(%S+)%s*$")
  local decoded = b64 and ngx.decode_base64(b64)
  if not decoded then return nil, "malformed" end
  local id, secret = decoded:match("^([^:]*):(.*)$")
  if not id then return nil, "malformed" end
  local want_id, want_secret = state.get("client_id"), state.get("client_secret")
  if id == want_id and secret == want_secret then return id end
  if form_decode(id) == want_id and form_decode(secret) == want_secret then return want_id end
  return nil, "wrong"
end

local function invalid_client()
  state.count("token_invalid_client")
  respond.oauth_error(401, "invalid_client", "client authentication failed")
end

local function grant_reply(client_id, grant, with_refresh)
  local access, lifetime = tokens.issue(client_id, grant)
  local body = { access_token = access, token_type = "bearer", expires_in = lifetime }
  if with_refresh then body.refresh_token = tokens.issue_refresh(client_id) end
  respond.json(200, body, { ["Cache-Control"] = "no-store", Pragma = "no-cache" })
end

local function client_credentials()
  if not basic_client() then return invalid_client() end
  state.count("issued_client_credentials")
  grant_reply(state.get("client_id"), "client_credentials", false)
end

local function authorization_code(args)
  local code = args.code
  if type(code) ~= "string" then
    return respond.oauth_error(400, "invalid_request", "code is required")
  end
  local confidential = ngx.var.http_authorization ~= nil
  local client_id
  if confidential then
    client_id = basic_client()
    if not client_id then return invalid_client() end
  else
    client_id = args.client_id
    if client_id ~= state.get("public_client_id") and client_id ~= state.get("client_id") then
      return invalid_client()
    end
  end
  local info = tokens.redeem_code(code)
  if not info or info.client_id ~= client_id then
    state.count("token_invalid_grant")
    return respond.oauth_error(400, "invalid_grant", "authorization code is invalid, used or expired")
  end
  if info.redirect_uri and args.redirect_uri ~= info.redirect_uri then
    state.count("token_invalid_grant")
    return respond.oauth_error(400, "invalid_grant", "redirect_uri does not match")
  end
  if info.code_challenge then
    local verifier = args.code_verifier
    if type(verifier) ~= "string" or not verifier:match("^[%w%-%._~]+$")
        or #verifier < 43 or #verifier > 128
        or crypto.b64url(crypto.sha256(verifier)) ~= info.code_challenge then
      state.count("token_invalid_grant")
      state.count("token_pkce_failed")
      return respond.oauth_error(400, "invalid_grant", "code_verifier does not match the code_challenge")
    end
    state.count("token_pkce")
  elseif not confidential then
    -- A public client must prove possession of the code with PKCE.
    state.count("token_invalid_grant")
    return respond.oauth_error(400, "invalid_grant", "code_verifier required for public clients")
  end
  state.count("issued_authorization_code")
  -- Refresh tokens are for confidential clients only.
  grant_reply(client_id, "authorization_code", confidential)
end

local function refresh_token(args)
  local client_id = basic_client()
  if not client_id then return invalid_client() end
  local refresh = args.refresh_token
  if type(refresh) ~= "string" or not tokens.redeem_refresh(refresh, client_id) then
    state.count("token_invalid_grant")
    return respond.oauth_error(400, "invalid_grant", "refresh token is invalid, used or revoked")
  end
  state.count("issued_refresh_token")
  grant_reply(client_id, "refresh_token", true)
end

local GRANTS = {
  client_credentials = client_credentials,
  authorization_code = authorization_code,
  refresh_token = refresh_token,
}

local function apply_scenario(scenario)
  local kind = scenario.kind
  if kind == "rate_limit" then
    state.count("token_rate_limited")
    respond.oauth_error(400, "invalid_request",
      "rate limit exceeded; retry after " .. tostring(scenario.retry_after or 1) .. " seconds")
  elseif kind == "status" then
    local status = scenario.status or 503
    if status >= 500 then state.count("token_5xx") end
    respond.oauth_error(status, "server_error", "the stand-in was told to fail")
  elseif kind == "hang" then
    ngx.sleep(scenario.seconds or 1)
    return false
  elseif kind == "malformed" then
    ngx.status = 200
    ngx.header["Content-Type"] = "application/json"
    ngx.print('{"access_token": "x", "expires_in": ')
  else
    respond.oauth_error(500, "server_error", "unknown scenario " .. tostring(kind))
  end
  return true
end

function M.token()
  state.count("token_requests")
  if ngx.req.get_method() ~= "POST" then
    return respond.oauth_error(405, "invalid_request", "use POST")
  end
  ngx.req.read_body()
  local args = ngx.req.get_post_args(100) or {}
  local grant = args.grant_type
  local handler = type(grant) == "string" and GRANTS[grant]
  state.count("token_grant_" .. (handler and grant or "other"))
  local scenario = state.take_scenario("token", "POST", "/oauth/token")
  if scenario and apply_scenario(scenario) then return end
  if not handler then
    state.count("token_unsupported_grant")
    return respond.oauth_error(400, "unsupported_grant_type", "grant_type not supported")
  end
  handler(args)
end

-- Stands in for the browser login: no user interaction, straight back with a code.
function M.authorize()
  local args = ngx.req.get_uri_args(100)
  local client_id, redirect_uri = args.client_id, args.redirect_uri
  if args.response_type ~= "code" then
    return respond.oauth_error(400, "unsupported_response_type", "response_type must be code")
  end
  if client_id ~= state.get("client_id") and client_id ~= state.get("public_client_id") then
    return respond.oauth_error(400, "invalid_client", "unknown client_id")
  end
  if type(redirect_uri) ~= "string" or not redirect_uri:match("^https?://") then
    return respond.oauth_error(400, "invalid_request", "redirect_uri is required")
  end
  local challenge = args.code_challenge
  if challenge ~= nil then
    if args.code_challenge_method ~= "S256" then
      return respond.oauth_error(400, "invalid_request", "code_challenge_method must be S256")
    end
    if type(challenge) ~= "string" or not challenge:match("^[%w%-_]+$") or #challenge ~= 43 then
      return respond.oauth_error(400, "invalid_request", "code_challenge must be base64url(SHA-256)")
    end
  end
  state.count("authorize_requests")
  local code = tokens.issue_code {
    client_id = client_id, redirect_uri = redirect_uri, code_challenge = challenge,
  }
  local location = redirect_uri .. (redirect_uri:find("?", 1, true) and "&" or "?")
    .. "code=" .. ngx.escape_uri(code)
  if type(args.state) == "string" then location = location .. "&state=" .. ngx.escape_uri(args.state) end
  ngx.header["Location"] = location
  ngx.status = 302
  ngx.print("")
end

return M
