--- Opportunistic JWT claims (DESIGN.md §1 rule 2). Genesys tokens may well be
-- opaque: a token that is not a JWT gives nil, err (kind "protocol") and the
-- caller carries on with expires_in. Signatures are not verified: we are not
-- the audience, and the claims are only used to learn times. The token itself
-- never appears in an error.
local core = require "skewguard.core"
local errors = require "skewguard.errors"
local cjson = require "cjson.safe"

local M = {}

-- Registered claims that carry times (RFC 7519 §4.1): NumericDate, a finite number.
local TIME_CLAIMS = { "exp", "nbf", "iat" }

local function finite(v)
  return type(v) == "number" and v == v and v ~= math.huge and v ~= -math.huge
end

--- Decode the claims of a compact JWT.
-- Returns claims (table), header (table); or nil, err.
function M.claims(token)
  if type(token) ~= "string" then
    error("skewguard.jwt.claims: token must be a string, got " .. type(token), 2)
  end
  local payload, header_json, kind = core.jwt_payload(token)
  if not payload then return nil, errors.from_core(header_json, kind) end
  local claims = cjson.decode(payload)
  if type(claims) ~= "table" then
    return nil, errors.new("protocol", "JWT payload is not valid JSON")
  end
  local header = cjson.decode(header_json)
  if type(header) ~= "table" then
    return nil, errors.new("protocol", "JWT header is not valid JSON")
  end
  for _, name in ipairs(TIME_CLAIMS) do
    local v = claims[name]
    if v ~= nil and not finite(v) then
      return nil, errors.new("protocol", "JWT claim " .. name .. " is not a NumericDate")
    end
  end
  return claims, header
end

return M
