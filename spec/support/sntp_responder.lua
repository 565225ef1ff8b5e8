-- A misbehaving-on-request SNTP server for the specs and the benchmark. Runs as its
-- own process (the client under test blocks in poll), under lua5.4 with LuaSocket:
--
--   lua5.4 spec/support/sntp_responder.lua [address]
--
-- prints "PORT <n>" and serves <address>:<n> (default 127.0.0.1; "::1" for IPv6).
--
-- It is controlled over the same UDP socket: a datagram "CTL <command>" gets one reply.
--   CTL set k=v k=v ...   reset to a well-behaved server, then apply the settings below
--   CTL stats             "OK requests=N offset=S t2=HEX t3=HEX" about the last request
--   CTL quit              exit
-- Settings: offset (s added to the server clock), hold (s between receive and transmit
-- stamps), leap, version, mode, stratum, poll, precision, refid (4 chars), root_delay,
-- root_dispersion (s), kod (a code: stratum 0 reply), spoof (first|only: a reply with a
-- wrong origin and a 999 s error, before the genuine one or instead of it), short (reply
-- length), zero_transmit (1), receive_after_transmit (1), silent (1), echo (1: send the
-- request back), era (1: place the server clock so that the receive stamp falls
-- hold/2 before the 2036 era rollover and the transmit stamp after it).
local socket = require "socket"

local NTP_UNIX_OFFSET = 2208988800
local ERA_ROLLOVER_UNIX = 4294967296 - NTP_UNIX_OFFSET -- 2036-02-07 06:28:16 UTC
local IDLE_EXIT = 120 -- seconds without any datagram: the test that owned us is gone

local function defaults()
  return {
    offset = 0, hold = 0, leap = 0, version = 4, mode = 4, stratum = 2, poll = 4,
    precision = -20, refid = nil, root_delay = 0, root_dispersion = 2 ^ -16,
  }
end

local cfg = defaults()
local stats = { requests = 0, offset = 0, t2 = "", t3 = "" }

local function ntp_parts(t)
  local sec = math.floor(t)
  local frac = math.floor((t - sec) * 4294967296)
  return (sec + NTP_UNIX_OFFSET) & 0xffffffff, frac
end

local function ntp(t)
  return string.pack(">I4I4", ntp_parts(t))
end

local function short_format(seconds)
  return string.pack(">I4", math.floor(seconds * 65536 + 0.5) & 0xffffffff)
end

-- The first 40 bytes; the transmit stamp is appended at the last moment.
local function build_head(origin, t2, c)
  local first = (c.leap << 6) | (c.version << 3) | c.mode
  local refid = c.kod or c.refid or "\127\0\0\1"
  refid = (refid .. "\0\0\0\0"):sub(1, 4)
  local stratum = c.kod and 0 or c.stratum
  return string.pack(">BBbb", first, stratum, c.poll, c.precision)
    .. short_format(c.root_delay) .. short_format(c.root_dispersion) .. refid
    .. ntp(t2) -- reference timestamp: when we last "set" our clock
    .. origin .. ntp(t2)
end

local function transmit(c, t3)
  return c.zero_transmit and string.rep("\0", 8) or ntp(t3)
end

local function apply(args)
  local new = defaults()
  for k, v in args:gmatch("(%w[%w_]*)=(%S+)") do
    if k == "refid" or k == "kod" or k == "spoof" then new[k] = v
    elseif new[k] ~= nil or k == "short" then new[k] = assert(tonumber(v), k)
    else new[k] = (v == "1") end
  end
  cfg = new
end

local address = arg[1] or "127.0.0.1"
local udp = assert(address:find(":", 1, true) and socket.udp6() or socket.udp())
assert(udp:setsockname(address, 0))
local _, port = udp:getsockname()
io.stdout:write("PORT ", port, "\n")
io.stdout:flush()
udp:settimeout(IDLE_EXIT)

while true do
  local data, ip, from_port = udp:receivefrom()
  local now = socket.gettime()
  if not data then break end -- idle for too long, or the socket failed
  local cmd = data:match("^CTL (.*)$")
  if cmd then
    local verb, rest = cmd:match("^(%a+)%s*(.*)$")
    if verb == "set" then
      apply(rest)
      stats.requests = 0
      udp:sendto("OK", ip, from_port)
    elseif verb == "stats" then
      udp:sendto(string.format("OK requests=%d offset=%.9f t2=%s t3=%s", stats.requests,
        stats.offset, stats.t2, stats.t3), ip, from_port)
    elseif verb == "quit" then
      udp:sendto("OK", ip, from_port)
      break
    else
      udp:sendto("ERR unknown command", ip, from_port)
    end
  elseif #data >= 48 then
    stats.requests = stats.requests + 1
    local c = cfg
    if not c.silent then
      local request_transmit = data:sub(41, 48)
      local offset = c.offset
      if c.era then offset = ERA_ROLLOVER_UNIX - c.hold / 2 - now end
      local t2 = now + offset
      if c.hold > 0 then
        local until_ = now + c.hold
        repeat until socket.gettime() >= until_ -- busy: a sleep would overshoot
      end
      stats.offset = offset
      if c.echo then
        udp:sendto(data, ip, from_port)
      else
        local genuine = build_head(request_transmit, t2, c)
        if c.spoof then
          local wrong = string.pack(">I4I4", math.random(0, 0xffffffff), math.random(0, 0xffffffff))
          local spoof_cfg = setmetatable({ kod = false }, { __index = c })
          udp:sendto(build_head(wrong, t2 + 999, spoof_cfg) .. transmit(c, socket.gettime() + offset + 999),
            ip, from_port)
        end
        -- T3 as late as possible: whatever runs after it lengthens the return leg only.
        local t3 = socket.gettime() + offset
        local t2_stamp = t2
        if c.receive_after_transmit then t2_stamp, t3 = t3 + 0.5, t2 end
        if t2_stamp ~= t2 then genuine = build_head(request_transmit, t2_stamp, c) end
        local pkt = genuine .. transmit(c, t3)
        if c.short then pkt = pkt:sub(1, c.short) end
        if c.spoof ~= "only" then udp:sendto(pkt, ip, from_port) end
        stats.t2 = string.format("%08x", (ntp_parts(t2_stamp)))
        stats.t3 = string.format("%08x", (ntp_parts(t3)))
      end
    end
  end
end
udp:close()
