local errors = require "skewguard.errors"

describe("error objects", function()
  it("carry a kind, a message and fields, and print as one line", function()
    local e = errors.new("rate_limited", "too many\nrequests", { status = 429, retry_after = 42,
      correlation_id = "abc-123", code = "too.many.requests.retry.after" })
    assert.equal("rate_limited", e.kind)
    assert.equal(429, e.status)
    local s = tostring(e)
    assert.is_nil(s:find("\n"))
    assert.truthy(s:find("rate_limited", 1, true))
    assert.truthy(s:find("abc-123", 1, true))
    assert.truthy(s:find("retry-after=42s", 1, true))
    assert.is_true(errors.is(e, "rate_limited"))
    assert.is_false(errors.is(e, "timeout"))
    assert.is_false(errors.is({ kind = "timeout" }))
  end)

  it("raise on an unknown kind, which is a programming error", function()
    assert.has_error(function() errors.new("whatever", "x") end)
  end)

  it("map the core's nil, message, kind convention", function()
    local e = errors.from_core("connection refused", "network")
    assert.equal("network", e.kind)
    assert.equal("protocol", errors.from_core("odd", "nonsense").kind)
  end)
end)
