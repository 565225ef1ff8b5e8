-- Builds NTP server replies byte by byte for the sans-I/O specs. Plain arithmetic (no
-- string.pack, no bit ops) so it runs on Lua 5.4 and LuaJIT alike.
local M = {}

M.NTP_UNIX_OFFSET = 2208988800
M.ERA_ROLLOVER = 4294967296 - M.NTP_UNIX_OFFSET -- Unix time of 2036-02-07 06:28:16 UTC

local function be32(n)
  n = n % 4294967296
  local b4 = n % 256
  n = (n - b4) / 256
  local b3 = n % 256
  n = (n - b3) / 256
  local b2 = n % 256
  local b1 = (n - b2) / 256
  return string.char(b1, b2, b3, b4)
end
M.be32 = be32

function M.read32(s, at)
  local a, b, c, d = s:byte(at, at + 3)
  return ((a * 256 + b) * 256 + c) * 256 + d
end

--- Unix seconds -> 8-byte NTP timestamp (the era is dropped, as on the wire).
function M.timestamp(unix)
  local sec = math.floor(unix)
  return be32(sec + M.NTP_UNIX_OFFSET) .. be32(math.floor((unix - sec) * 4294967296))
end

--- The transmit timestamp of a request: a genuine reply echoes it as its origin.
function M.origin_of(request)
  return request:sub(41, 48)
end

--- A server reply. Fields: origin (8 bytes), t2 and t3 (Unix seconds) or t2_raw/t3_raw
-- (8 bytes), leap, version, mode, stratum, poll, precision, refid (4 bytes),
-- root_delay and root_dispersion (seconds) or *_raw (32-bit integers).
function M.reply(f)
  local first = (f.leap or 0) * 64 + (f.version or 4) * 8 + (f.mode or 4)
  local function short(x, raw) return be32(raw or math.floor((x or 0) * 65536 + 0.5)) end
  local t2 = f.t2_raw or M.timestamp(f.t2)
  local t3 = f.t3_raw or M.timestamp(f.t3)
  return string.char(first, f.stratum or 2, (f.poll or 4) % 256, (f.precision or -20) % 256)
    .. short(f.root_delay, f.root_delay_raw) .. short(f.root_dispersion, f.root_dispersion_raw)
    .. (f.refid or "\192\0\2\1") .. t2 .. assert(f.origin, "origin") .. t2 .. t3
end

return M
