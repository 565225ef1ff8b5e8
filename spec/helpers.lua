-- Loaded by busted before every spec file (see .busted): points package.cpath at
-- the build for the running interpreter, so the same specs run on 5.4 and LuaJIT.
local build = os.getenv("SKEWGUARD_BUILD")
if not build or build == "" then
  build = (jit and "build/luajit") or ("build/lua" .. _VERSION:match("%d+%.%d+"))
end
package.cpath = "./" .. build .. "/?.so;" .. package.cpath
package.path = "./lua/?.lua;./lua/?/init.lua;./spec/?.lua;" .. package.path
