--- skewguard: OAuth2 tokens that stay valid despite clock skew, expiry races,
-- revocation and rate limits. Submodules load lazily: `sg.genesys`, `sg.skew`,
-- `sg.sntp`, `sg.errors`, `sg.jwt`, `sg.core`.
local M = { _VERSION = "skewguard scm" }

local lazy = {
  core = "skewguard.core", errors = "skewguard.errors", genesys = "skewguard.genesys",
  skew = "skewguard.skew", sntp = "skewguard.sntp", token = "skewguard.token",
  client = "skewguard.client", jwt = "skewguard.jwt", log = "skewguard.log", doctor = "skewguard.doctor",
  regions = "skewguard.regions",
}

return setmetatable(M, {
  __index = function(t, k)
    local name = lazy[k]
    if not name then return nil end
    local mod = require(name)
    rawset(t, k, mod)
    return mod
  end,
})
