--- Jittered exponential backoff. `attempt` counts from 1. The delay is drawn
-- uniformly from [d/2, d] with d = min(cap, base * 2^(attempt-1)): never zero
-- (no tight loop), and spread so a fleet does not retry in lock-step.
local M = {}

function M.delay(attempt, base, cap, random)
  base = base or 0.5
  cap = cap or 30
  random = random or math.random
  local d = base * 2 ^ (attempt - 1)
  if d > cap then d = cap end
  return d * (0.5 + 0.5 * random())
end

return M
