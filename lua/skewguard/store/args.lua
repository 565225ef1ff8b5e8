--- Argument checks every store shares (docs/store.md). Misuse is a programming
-- error: it raises, at the level of the store method's caller.
local M = {}

-- `depth`: how many helper frames stand between the store method and this check.
function M.check_key(key, who, depth)
  if type(key) ~= "string" or key == "" then
    error((who or "skewguard.store") .. ": key must be a non-empty string", 3 + (depth or 0))
  end
end

function M.check_ttl(ttl, who, depth)
  if type(ttl) ~= "number" or ttl ~= ttl or ttl <= 0 or ttl == math.huge then
    error((who or "skewguard.store") .. ": ttl must be a positive number of seconds", 3 + (depth or 0))
  end
end

return M
