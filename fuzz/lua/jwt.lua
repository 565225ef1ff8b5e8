-- Driver for fuzz/jwt.c: core.jwt_payload (split + strict base64url of three
-- segments) and the Lua claims decoder on top. Oracles: never raises on a string;
-- failures are kind "protocol"; success gives two JSON-object-shaped strings; every
-- error message is one of the fixed texts, so no part of the token (a bearer
-- secret) can be in it.
local core = require "skewguard.core"
local jwt = require "skewguard.jwt"

local B64 = { "invalid base64url character", "invalid base64url length", "invalid base64url padding",
  "non-canonical base64url (stray bits in the last character)" }
local FIXED = {
  ["not a compact JWS JWT: more than three segments"] = true,
  ["not a JWT: expected three dot-separated segments"] = true,
  ["not a JWT: empty header or payload segment"] = true,
  ["not a JWT: header is not a JSON object"] = true,
  ["not a JWT: payload is not a JSON object"] = true,
  ["JWT payload is not valid JSON"] = true,
  ["JWT header is not valid JSON"] = true,
  ["JWT claim exp is not a NumericDate"] = true,
  ["JWT claim nbf is not a NumericDate"] = true,
  ["JWT claim iat is not a NumericDate"] = true,
}
for _, part in ipairs({ "header", "payload", "signature" }) do
  for _, m in ipairs(B64) do FIXED["JWT " .. part .. ": " .. m] = true end
end

local function object_shaped(s)
  return s:match("^%s*{") and s:match("}%s*$")
end

return function(input)
  local payload, header, kind = core.jwt_payload(input)
  if payload then
    if not (object_shaped(payload) and object_shaped(header)) then
      error("jwt_payload returned something that is not an object")
    end
    local dots = select(2, input:gsub("%.", ""))
    if dots ~= 2 then error("accepted a token with " .. dots .. " dots") end
  else
    if kind ~= "protocol" or type(header) ~= "string" then error("failure without kind protocol") end
    if not FIXED[header] then error("not one of the fixed messages: " .. header) end
  end
  local claims, err = jwt.claims(input)
  if claims then
    for _, name in ipairs({ "exp", "nbf", "iat" }) do
      local v = claims[name]
      if v ~= nil and not (type(v) == "number" and v == v and v > -math.huge and v < math.huge) then
        error("claim " .. name .. " is not a finite number")
      end
    end
  else
    if not FIXED[err.message] then error("not one of the fixed messages: " .. tostring(err.message)) end
    if tostring(err) ~= "skewguard: protocol: " .. err.message then error("tostring adds to the message") end
  end
end
