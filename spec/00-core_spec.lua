local core = require "skewguard.core"

describe("skewguard.core", function()
  it("loads the build made for this interpreter", function()
    assert.equal(_VERSION, core.lua_version:match("^Lua %d+%.%d+") or core.lua_version)
  end)

  describe("clocks", function()
    it("reads a monotonic clock that never goes back", function()
      local prev = core.monotonic()
      for _ = 1, 10000 do
        local now = core.monotonic()
        assert.is_true(now >= prev)
        prev = now
      end
    end)

    it("has sub-microsecond resolution", function()
      local a = core.monotonic()
      local b
      repeat b = core.monotonic() until b ~= a
      assert.is_true(b - a < 1e-6, "smallest step " .. (b - a))
    end)

    it("reads the wall clock as Unix seconds", function()
      local w = core.wall()
      assert.is_true(math.abs(w - os.time()) <= 1.5)
      assert.is_true(w % 1 ~= 0 or core.wall() % 1 ~= 0)
    end)

    it("reads both clocks together", function()
      local m, w = core.now()
      assert.is_true(math.abs(m - core.monotonic()) < 0.1)
      assert.is_true(math.abs(w - core.wall()) < 0.1)
    end)
  end)
end)
