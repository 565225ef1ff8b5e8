-- The sans-I/O Redis protocol of the core (hiredis's formatter and reader): bytes in,
-- Lua values out, no socket.
local core = require "skewguard.core"

describe("redis protocol (hiredis)", function()
  it("formats a command as RESP, binary-safe", function()
    assert.equal("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\0b\r\n\r\n", core.redis_format({ "SET", "k", "a\0b\r\n" }))
    assert.equal("*2\r\n$6\r\nEXPIRE\r\n$2\r\n42\r\n", core.redis_format({ "EXPIRE", 42 }))
  end)

  it("raises on misuse: no command, non-string arguments", function()
    assert.has_error(function() core.redis_format({}) end)
    assert.has_error(function() core.redis_format({ "GET", {} }) end)
    assert.has_error(function() core.redis_format("GET k") end)
  end)

  it("parses every reply type into Lua values", function()
    local r = core.redis_reader()
    r:feed("+OK\r\n:-42\r\n$5\r\na\0b\r\n\r\n$-1\r\n*-1\r\n*4\r\n:1\r\n$-1\r\n-WRONGTYPE bad\r\n*1\r\n$1\r\nx\r\n")
    assert.same({ ok = "OK" }, r:reply())
    assert.equal(-42, r:reply())
    assert.equal("a\0b\r\n", r:reply())
    assert.is_false(r:reply())
    assert.is_false(r:reply())
    assert.same({ 1, false, { err = "WRONGTYPE bad" }, { "x" } }, r:reply())
    assert.equal(0, select("#", r:reply()))
  end)

  it("returns an error reply as nil, message, \"redis\"", function()
    local r = core.redis_reader()
    r:feed("-NOAUTH Authentication required.\r\n")
    local v, msg, kind = r:reply()
    assert.is_nil(v)
    assert.equal("NOAUTH Authentication required.", msg)
    assert.equal("redis", kind)
  end)

  it("returns nothing until a reply is complete, whatever the split", function()
    local bytes = "*2\r\n$10\r\n0123456789\r\n:7\r\n"
    for cut = 1, #bytes - 1 do
      local r = core.redis_reader()
      r:feed(bytes:sub(1, cut))
      assert.equal(0, select("#", r:reply()))
      assert.equal(cut, r:pending())
      r:feed(bytes:sub(cut + 1))
      assert.same({ "0123456789", 7 }, r:reply())
      assert.equal(0, r:pending())
    end
  end)

  it("turns a broken stream into nil, message, \"protocol\" and stays failed", function()
    local r = core.redis_reader()
    r:feed("?what\r\n")
    local v, msg, kind = r:reply()
    assert.is_nil(v)
    assert.truthy(msg:find("redis reply", 1, true))
    assert.equal("protocol", kind)
    assert.equal("protocol", select(3, r:feed("+OK\r\n")))
    assert.equal("protocol", select(3, r:reply()))
  end)

  it("is a class with tostring, close (idempotent) and __close", function()
    local r = core.redis_reader()
    assert.truthy(tostring(r):find("^skewguard.redis_reader{ok, 0 bytes pending}"))
    r:feed("+O")
    r:close()
    r:close()
    assert.truthy(tostring(r):find("closed"))
    assert.has_error(function() r:reply() end)
    assert.has_error(function() r:feed("K\r\n") end)
  end)

  it("gives random hex from the CSPRNG", function()
    local seen = {}
    for _ = 1, 200 do
      local h = core.random_hex(16)
      assert.truthy(h:match("^%x+$"))
      assert.equal(32, #h)
      assert.is_nil(seen[h])
      seen[h] = true
    end
    assert.has_error(function() core.random_hex(0) end)
    assert.has_error(function() core.random_hex(65) end)
  end)
end)
