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
      -- Readings must not be quantised to whole microseconds. (The gap between two
      -- calls is no measure of resolution: under valgrind it is several µs.)
      local off_grid = 0
      for _ = 1, 200 do
        local us = core.monotonic() * 1e6
        if math.abs(us - math.floor(us + 0.5)) > 1e-3 then off_grid = off_grid + 1 end
      end
      assert.is_true(off_grid > 150, off_grid .. " of 200 readings between microseconds")
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
