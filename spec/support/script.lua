-- Runs one of our Lua scripts (bin/, examples/) the way a user does: a separate
-- process of the same interpreter, on this tree's modules and build.
-- Returns the output (stdout and, unless quiet, stderr) and the exit code.
local M = {}

M.interpreter = jit and "luajit" or "lua5.4"
M.build = os.getenv("SKEWGUARD_BUILD") or (jit and "build/luajit" or "build/lua5.4")

function M.run(script, args, env, quiet)
  local cmd = table.concat({
    "env", "LUA_PATH='./lua/?.lua;./lua/?/init.lua;;'", "LUA_CPATH='./" .. M.build .. "/?.so;;'",
    env or "", M.interpreter, script, args or "",
    quiet and "2>/dev/null" or "2>&1",
    -- the exit code travels in the output: LuaJIT's close() does not return it
    "; echo \"__exit=$?\"",
  }, " ")
  local f = assert(io.popen(cmd))
  local out = f:read("*a")
  f:close()
  local code = tonumber(out:match("__exit=(%d+)%s*$"))
  return (out:gsub("__exit=%d+%s*$", "")), code
end

return M
