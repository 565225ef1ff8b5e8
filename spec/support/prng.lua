-- A seeded Park-Miller generator (x = 16807 x mod 2^31-1) for reproducible
-- simulations. Every product stays below 2^53, so it gives the same sequence
-- with Lua 5.4 integers and with LuaJIT doubles.
local M = {}

function M.new(seed)
  local state = math.floor(seed) % 2147483646 + 1
  return function(lo, hi)
    state = (state * 16807) % 2147483647
    local u = state / 2147483647 -- in (0, 1)
    if lo then return lo + (hi - lo) * u end
    return u
  end
end

return M
