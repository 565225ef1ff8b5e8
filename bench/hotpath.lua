-- Hot path: client:token() on a fresh token, next to the floor (bench/floor.c: one C
-- method that reads CLOCK_MONOTONIC, compares with a deadline, returns a cached
-- string) and the naive wrapper that decodes the JWT payload on every call.
-- A benchmark, not a test. Prints one Markdown table row per variant.
--
--   <lua> bench/hotpath.lua [rounds]     (run from the repository root by bench/run.sh)
local tag = jit and "luajit" or "lua" .. _VERSION:match("%d+%.%d+")
package.cpath = "./build/" .. tag .. "/?.so;./build/bench/" .. tag .. "/?.so;" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;./bench/?.lua;" .. package.path

local core = require "skewguard.core"
local cjson = require "cjson"
local genesys = require "skewguard.genesys"
local standin = require "support.standin"
local floor = require "floor"

local ROUNDS = tonumber(arg[1]) or 7
local N_FAST = 1000000   -- calls per round for the C-speed variants
local N_SLOW = 50000     -- calls per round for the naive and policy paths
local clock = os.clock   -- CPU time: other processes on the machine do not count

local s = standin.start { jwt = true, lifetime = 86400 }
local ok, err = pcall(function()
  local client = genesys.new { login_url = s.url, client_id = s.client_id, client_secret = s.client_secret,
    rate_limit = false }
  local access = assert(client:token())
  assert(client.tokens:state() == "fresh")
  local f = floor.new(access, 3600)
  assert(f:get() == access and f:get_coarse() == access)

  -- The naive wrapper: decode the payload on every call to see whether exp is near.
  local naive = { jwt = access, buffer = 60 }
  function naive:token()
    local payload = self.jwt:match("^[^.]+%.([^.]+)%.")
    local claims = cjson.decode(core.b64url_decode(payload))
    if claims.exp - self.buffer > os.time() then return self.jwt end
    error("the bench token expired")
  end
  assert(naive:token() == access)
  local tokens = client.tokens

  local variants = {
    { key = "empty", n = N_FAST, run = function(n) local x; for _ = 1, n do x = f end return x end },
    { key = "floor", n = N_FAST, run = function(n) local x; for _ = 1, n do x = f:get() end return x end },
    { key = "floor_coarse", n = N_FAST,
      run = function(n) local x; for _ = 1, n do x = f:get_coarse() end return x end },
    { key = "client", n = N_FAST, run = function(n) local x; for _ = 1, n do x = client:token() end return x end },
    { key = "policy", n = N_SLOW, run = function(n) local x; for _ = 1, n do x = tokens:get() end return x end },
    { key = "naive", n = N_SLOW, run = function(n) local x; for _ = 1, n do x = naive:token() end return x end },
  }
  local samples = {}
  for _, v in ipairs(variants) do
    samples[v.key] = {}
    assert(v.key == "empty" or v.run(1000) == access) -- warm-up (and the JIT's traces)
  end
  -- Interleaved rounds: a slow moment of the machine hits every variant alike.
  for _ = 1, ROUNDS do
    for _, v in ipairs(variants) do
      local t0 = clock()
      v.run(v.n)
      local dt = clock() - t0
      table.insert(samples[v.key], dt / v.n * 1e9)
    end
  end
  local function median(t)
    table.sort(t)
    local m = #t
    return m % 2 == 1 and t[(m + 1) / 2] or (t[m / 2] + t[m / 2 + 1]) / 2
  end
  local ns = {}
  for k, list in pairs(samples) do ns[k] = median(list) end
  local loop = ns.empty
  local function net(k) return ns[k] - loop end
  local name = jit and jit.version or _VERSION
  local function row(label, k)
    print(string.format("| %s | %s | %.1f | %.2f× | %.1f× |", name, label, net(k), net(k) / net("floor"),
      net("naive") / net(k)))
  end
  row("floor: C method, CLOCK_MONOTONIC, cached string", "floor")
  row("floor with CLOCK_MONOTONIC_COARSE (reference)", "floor_coarse")
  row("**`client:token()`** (fast path)", "client")
  row("`tokens:get()` (the policy path, before the fast path)", "policy")
  row("naive: base64url + cjson.decode of the JWT payload per call", "naive")
  -- machine-readable line for run.sh's verdict
  io.stderr:write(string.format("HOTPATH %s client_vs_floor=%.3f naive_vs_client=%.1f loop=%.1f\n",
    name:gsub(" ", "_"), net("client") / net("floor"), net("naive") / net("client"), loop))
  client:close()
end)
s:stop()
if not ok then error(err, 0) end
