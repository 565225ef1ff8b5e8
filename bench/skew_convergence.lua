-- Date-header skew convergence against the stand-in with a fixed clock offset:
-- width of the skew interval against the number of samples, passive (responses at
-- random phases of the server's second) and with the doctor's phased probes
-- (skewguard.doctor.probe_date). Prints Markdown; writes bench/out/skew-passive.dat,
-- bench/out/skew-phased.dat and, with gnuplot, bench/out/skew-convergence.png. A benchmark, not a test.
--
--   lua5.4 bench/skew_convergence.lua [phased trials] [probes per trial]
package.cpath = "./build/lua5.4/?.so;" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path

local core = require "skewguard.core"
local skew = require "skewguard.skew"
local doctor = require "skewguard.doctor"
local curl = require "skewguard.transport.curl"
local standin = require "support.standin"

local PHASED_TRIALS = tonumber(arg[1]) or 3
local PROBES = tonumber(arg[2]) or 10
local OFFSET = 0.3217         -- the stand-in's clock runs this far ahead of ours
local TRUTH = -OFFSET         -- skew = local - server
local POOL_SECONDS = 3
local PASSIVE_TRIALS = 200
local COUNTS = { 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128 }

local function median(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  local m = #c
  if m == 0 then return nil end
  return m % 2 == 1 and c[(m + 1) / 2] or (c[m / 2] + c[m / 2 + 1]) / 2
end

local function ms(s) return s and string.format("%.1f ms", s * 1e3) or "—" end

-- How far the truth lies outside [lo, hi] (0 inside).
local function miss(lo, hi) return lo > TRUTH and lo - TRUTH or (TRUTH > hi and TRUTH - hi or 0) end
local worst_miss = 0

local s = standin.start { offset = OFFSET }
local ok, err = pcall(function()
  local url = s.url .. "/api/v2/tokens/me"
  local t = curl.new()

  -- Passive: a pool of real Date samples from back-to-back requests over a few
  -- seconds (so every phase of the server's second is in it); each trial feeds
  -- n samples drawn at random, i.e. requests at random phases, to a fresh estimator.
  local pool = {}
  local stop = core.monotonic() + POOL_SECONDS
  while core.monotonic() < stop do
    local res = assert(t:request({ url = url, header_list = false }))
    pool[#pool + 1] = { date = res.headers.date, t_send = res.t_send_wall, t_recv = res.t_recv_wall }
  end
  math.randomseed(20260101)
  local passive, contains = {}, {}
  for _, n in ipairs(COUNTS) do
    local widths, inside = {}, 0
    for _ = 1, PASSIVE_TRIALS do
      local picked, seen = {}, {}
      while #picked < n do
        local i = math.random(#pool)
        if not seen[i] then seen[i] = true; picked[#picked + 1] = pool[i] end
      end
      table.sort(picked, function(a, b) return a.t_send < b.t_send end)
      local est = skew.new()
      for _, p in ipairs(picked) do assert(est:observe_date(p.date, p.t_send, p.t_recv)) end
      local lo, hi = est:bounds(picked[#picked].t_recv)
      widths[#widths + 1] = hi - lo
      if lo <= TRUTH and TRUTH <= hi then inside = inside + 1 end
      worst_miss = math.max(worst_miss, miss(lo, hi))
    end
    passive[n] = median(widths)
    contains[n] = inside / PASSIVE_TRIALS
  end

  -- Phased: the doctor's probes, timed at the server's second boundary as the
  -- current estimate places it. The width is recorded after every probe.
  local phased, phased_inside, probes_done = {}, {}, 0
  for _ = 1, PHASED_TRIALS do
    t:sleep(math.random()) -- the first probe at a random phase, as when the doctor starts
    local est = skew.new()
    local widths = {}
    local probe_transport = setmetatable({
      request = function(_, req)
        local lo, hi = est:bounds()
        if lo then
          widths[#widths + 1] = { hi - lo, lo <= TRUTH and TRUTH <= hi }
          worst_miss = math.max(worst_miss, miss(lo, hi))
        end
        return t.request(t, req)
      end,
    }, { __index = t })
    local r = assert(doctor.probe_date(probe_transport, url, { estimator = est, probes = PROBES, target = 0 }))
    local lo, hi = est:bounds()
    widths[#widths + 1] = { hi - lo, lo <= TRUTH and TRUTH <= hi }
    worst_miss = math.max(worst_miss, miss(lo, hi))
    probes_done = math.max(probes_done, r.probes)
    for k, w in ipairs(widths) do
      phased[k] = phased[k] or {}
      phased_inside[k] = phased_inside[k] or { 0, 0 }
      table.insert(phased[k], w[1])
      phased_inside[k][1] = phased_inside[k][1] + (w[2] and 1 or 0)
      phased_inside[k][2] = phased_inside[k][2] + 1
    end
  end

  print(string.format("Stand-in clock %+.4f s from ours (true skew %+.4f s); loopback round trip about %.0f µs. "
    .. "Passive: %d real samples from %d s of back-to-back GETs, %d random draws per row. "
    .. "Phased: %d runs of `doctor.probe_date` (%d probes, target 0).",
    OFFSET, TRUTH, (pool[#pool].t_recv - pool[#pool].t_send) * 1e6, #pool, POOL_SECONDS, PASSIVE_TRIALS,
    PHASED_TRIALS, PROBES))
  print()
  print("| samples | passive: median width | passive: truth inside | phased probes: median width "
    .. "| phased: truth inside |")
  print("|---|---|---|---|---|")
  os.execute("mkdir -p bench/out")
  local passive_dat = assert(io.open("bench/out/skew-passive.dat", "w"))
  local phased_dat = assert(io.open("bench/out/skew-phased.dat", "w"))
  passive_dat:write("# samples median_width_s\n")
  phased_dat:write("# probes median_width_s\n")
  local rows = {}
  for _, n in ipairs(COUNTS) do rows[n] = true end
  for k = 1, probes_done do rows[k] = true end
  local ns = {}
  for n in pairs(rows) do ns[#ns + 1] = n end
  table.sort(ns)
  for _, n in ipairs(ns) do
    local pw = phased[n] and median(phased[n])
    local pin = phased_inside[n]
    print(string.format("| %d | %s | %s | %s | %s |", n, ms(passive[n]),
      contains[n] and string.format("%.0f%%", contains[n] * 100) or "—", ms(pw),
      pin and string.format("%d/%d", pin[1], pin[2]) or "—"))
    if passive[n] then passive_dat:write(string.format("%d %.9f\n", n, passive[n])) end
    if pw then phased_dat:write(string.format("%d %.9f\n", n, pw)) end
  end
  passive_dat:close()
  phased_dat:close()
  print()
  print(string.format("Worst miss (truth outside the interval): %.3f ms.", worst_miss * 1e3))
  t:close()
end)
s:stop()
if not ok then error(err, 0) end

local plot = [[
set terminal pngcairo size 800,500 noenhanced
set output 'bench/out/skew-convergence.png'
set title 'Date-header skew interval width against samples (loopback stand-in)'
set xlabel 'samples (Date headers)'
set ylabel 'interval width (s)'
set logscale y
set logscale x 2
set grid
set key top right
plot 'bench/out/skew-passive.dat' using 1:2 with linespoints title 'passive (random phases)', \
     'bench/out/skew-phased.dat' using 1:2 with linespoints title 'phased probes (doctor)'
]]
local f = assert(io.open("bench/out/skew-convergence.gp", "w"))
f:write(plot)
f:close()
if os.execute("gnuplot bench/out/skew-convergence.gp 2>/dev/null") then
  print()
  print("Plot: bench/out/skew-convergence.png (committed copy: docs/skew-convergence.png).")
else
  print()
  print("(gnuplot failed or is missing: no plot)")
end
