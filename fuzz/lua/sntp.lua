-- Driver for fuzz/sntp.c: the input is a server's reply to one SNTP request,
-- validated by exchange:validate (sntp.c). A genuine reply must echo our random
-- transmit timestamp, which a fuzzer cannot guess: the driver writes it into the
-- reply's origin field (bytes 25..32) unless that field starts with 0xEE, so both
-- the spoofed and the genuine paths are explored. The local send and receive
-- times come from bytes the validation does not judge (poll, precision), so
-- exchanges across the 2036 era rollover and small wall steps are covered.
local core = require "skewguard.core"

local ERA_ROLLOVER = 2085978496 -- 2036-02-07 06:28:16 UTC: NTP seconds wrap
local KINDS = { bogus = true, protocol = true, kiss_of_death = true, unsynchronised = true }

local function printable(s) return not s:find("[%c\128-\255]") end

local function finite(v) return type(v) == "number" and v == v and v > -math.huge and v < math.huge end

return function(reply)
  local ex, packet = core.sntp_request(1.0)
  if #packet ~= 48 then error("request is not 48 bytes") end
  if #reply >= 32 and reply:byte(25) ~= 0xEE then
    reply = reply:sub(1, 24) .. packet:sub(41, 48) .. reply:sub(33)
  end
  local poll = #reply >= 3 and reply:byte(3) or 0
  local precision = #reply >= 4 and reply:byte(4) or 0
  local t1_wall = (poll >= 128) and (ERA_ROLLOVER - 0.5) or 1700000000.25
  local rtt = (poll % 128) / 128 * 0.2
  local step = ((precision % 16) - 8) * 0.0005
  ex:sent(1000, t1_wall)
  local res, msg, kind, code = ex:validate(reply, 1000 + rtt, t1_wall + rtt + step)
  if res then
    for _, k in ipairs({ "skew", "offset", "delay", "uncertainty", "root_delay", "root_dispersion",
      "root_distance", "wall", "mono", "rtt" }) do
      if not finite(res[k]) then error("result field " .. k .. " is not finite") end
    end
    if res.skew ~= -res.offset then error("skew is not -offset") end
    if res.delay < 0 or res.uncertainty < res.delay / 2 then error("negative delay or uncertainty") end
    if res.root_distance > 1.0 then error("accepted a root distance above the limit") end
    if math.abs(res.offset) > 2 ^ 31 then error("offset beyond half an era") end
    if res.stratum < 1 or res.stratum > 15 or res.leap == 3 then error("accepted an unsynchronised server") end
    if not printable(res.refid) then error("refid is not printable") end
    local again = ex:validate(reply, 1000 + rtt, t1_wall + rtt + step)
    if not again or again.offset ~= res.offset then error("validation is not repeatable") end
  else
    if not KINDS[kind] then error("unknown failure kind " .. tostring(kind)) end
    if type(msg) ~= "string" or not printable(msg) then error("failure message is not printable text") end
    if kind == "kiss_of_death" then
      if type(code) ~= "string" or #code > 4 or not printable(code) then error("bad kiss code") end
    elseif code ~= nil then
      error("a kiss code outside kiss_of_death")
    end
  end
  ex:close()
end
