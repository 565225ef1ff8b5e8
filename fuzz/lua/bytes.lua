-- Reads a fuzzer's input as a stream of typed values, for the Lua drivers. Past the
-- end every read gives zero or the empty string, so any input is a whole program.
local M = {}

function M.reader(s)
  local pos = 1
  local r = {}
  function r.left() return #s - pos + 1 end
  function r.byte()
    local b = s:byte(pos) or 0
    pos = pos + 1
    return b
  end
  function r.int(nbytes) -- signed, little-endian
    local v = 0
    for i = 0, nbytes - 1 do v = v + r.byte() * 256 ^ i end
    local half = 256 ^ nbytes / 2
    if v >= half then v = v - 2 * half end
    return v
  end
  function r.str(max)
    local n = r.byte() % (max + 1)
    local out = s:sub(pos, pos + n - 1)
    pos = pos + n
    return out
  end
  function r.double() -- any double, NaN and infinities included
    local chunk = s:sub(pos, pos + 7)
    pos = pos + 8
    if #chunk < 8 then return 0 end
    return (string.unpack("<d", chunk))
  end
  function r.finite() -- a finite double (0 in place of NaN and infinities)
    local v = r.double()
    if v ~= v or v == math.huge or v == -math.huge then return 0 end
    return v
  end
  return r
end

return M
