--- Client-side request limiter: at most `limit` requests in ANY window of
-- `window` seconds (Genesys: 300 per minute per token).
--
-- A token bucket of capacity N refilling N per window lets through up to 2N in
-- one window (a full bucket, then a window's refill), so it cannot promise the
-- server's own rule. A sliding log of the last N send instants can: a request
-- may go when the N-th most recent one is at least `window` old. Memory is N
-- numbers per limiter.
local M = {}
local Limiter = {}
Limiter.__index = Limiter

function M.new(limit, window)
  assert(type(limit) == "number" and limit >= 1, "ratelimit: limit must be >= 1")
  window = window or 60
  assert(type(window) == "number" and window > 0, "ratelimit: window must be > 0")
  return setmetatable({ limit = math.floor(limit), window = window, ring = {}, head = 0, count = 0 }, Limiter)
end

--- Seconds to wait before a request may be sent at monotonic time `now`
-- (0 when it may go now). Does not record anything.
function Limiter:delay(now)
  if self.count < self.limit then return 0 end
  -- the oldest of the last `limit` sends sits right after head in the ring
  local oldest = self.ring[self.head % self.limit + 1]
  local ready = oldest + self.window
  return ready > now and ready - now or 0
end

--- Records a send at monotonic time `now` (a reservation made just before the
-- request goes out). Returns the slot, for `sent`.
function Limiter:record(now)
  self.head = self.head % self.limit + 1
  self.ring[self.head] = now
  if self.count < self.limit then self.count = self.count + 1 end
  return self.head
end

--- The request reserved at `reserved` in `slot` actually left at `actual`
-- (the transport's send instant, later than the reservation by connection setup
-- or scheduling). Moving the entry later only makes later waits longer, and it
-- makes the rule hold for the real send instants. Ignored when the slot has been
-- reused meanwhile (more than `limit` reservations since).
function Limiter:sent(slot, reserved, actual)
  if slot and actual and self.ring[slot] == reserved and actual > reserved then
    self.ring[slot] = actual
  end
end

return M
