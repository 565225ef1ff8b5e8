local core = require "skewguard.core"

describe("HTTP-date", function()
  it("parses the three forms of RFC 9110 §5.6.7 to the same instant", function()
    assert.equal(784111777, core.parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"))
    assert.equal(784111777, core.parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"))
    assert.equal(784111777, core.parse_http_date("Sun Nov  6 08:49:37 1994"))
  end)

  it("parses the epoch, dates past 2038, a leap second and two-digit asctime days", function()
    assert.equal(0, core.parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"))
    assert.equal(4102444800, core.parse_http_date("Fri, 01 Jan 2100 00:00:00 GMT"))
    assert.equal(1483228800, core.parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT"))
    assert.equal(951782400, core.parse_http_date("Tue Feb 29 00:00:00 2000"))
    assert.equal(784111777, core.parse_http_date("  Sun, 06 Nov 1994 08:49:37 GMT\t"))
  end)

  local garbage = {
    "hello", "12", "", " ", "GMT", "1994",
    "Sun, 06 Nov 1994 08:49:37 PST",          -- time zones other than GMT
    "Sun, 06 Nov 1994 08:49:37 +0000",
    "Sun, 06 Nov 1994 08:49:37",              -- missing GMT
    "Sun, 6 Nov 1994 08:49:37 GMT",           -- one-digit day in IMF-fixdate
    "Sun, 06 Nov 94 08:49:37 GMT",            -- two-digit year in IMF-fixdate
    "Sun, 06 Nov 1994 8:49:37 GMT",
    "Sun, 06 Nov 1994 08:49 GMT",
    "Sun, 06 Nov 1994 24:00:00 GMT",          -- hour out of range
    "Sun, 06 Nov 1994 08:60:00 GMT",
    "Sun, 06 Nov 1994 08:49:61 GMT",
    "Tue, 31 Feb 1994 08:49:37 GMT",          -- curl_getdate would roll this into March
    "Thu, 29 Feb 2001 00:00:00 GMT",
    "Sun, 00 Nov 1994 08:49:37 GMT",
    "Wed, 31 Dec 1969 23:59:59 GMT",          -- before the epoch (curl clamps it to 0)
    "Mon, 06 Nov 1994 08:49:37 GMT",          -- the wrong weekday: not a date a server made
    "Sun, 06 Xyz 1994 08:49:37 GMT",
    "Sun 06 Nov 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 08:49:37 GMT extra",
    "Sun, 06 Nov 1994 08:49:37 GMT\0",
    "Sunday, 06-Nov-1994 08:49:37 GMT",
    "Sun, 06-Nov-94 08:49:37 GMT",            -- RFC 850 needs the long day name
    "Sun Nov 6 08:49:37 1994",                -- asctime pads the day with a space
    "Sun Nov  6 08:49:37 94",
    "1994-11-06T08:49:37Z",                   -- ISO 8601 is not an HTTP-date
    "784111777",
    string.rep("Sun, ", 40),
  }
  for _, s in ipairs(garbage) do
    it("rejects " .. string.format("%q", s), function()
      local t, msg, kind = core.parse_http_date(s)
      assert.is_nil(t)
      assert.equal("protocol", kind)
      assert.is_string(msg)
    end)
  end

  it("formats IMF-fixdate from Unix time, flooring fractions", function()
    assert.equal("Sun, 06 Nov 1994 08:49:37 GMT", core.format_http_date(784111777))
    assert.equal("Sun, 06 Nov 1994 08:49:37 GMT", core.format_http_date(784111777.999))
    assert.equal("Thu, 01 Jan 1970 00:00:00 GMT", core.format_http_date(0))
    assert.equal("Fri, 01 Jan 2100 00:00:00 GMT", core.format_http_date(4102444800))
  end)

  it("round-trips formatting and parsing over a wide range of times", function()
    local t = 0
    while t < 4.2e9 do
      assert.equal(t, core.parse_http_date(core.format_http_date(t)))
      t = t + 86400 * 37 + 3671
    end
  end)

  it("raises on times outside what an HTTP-date can say (misuse)", function()
    assert.has_error(function() core.format_http_date(-1) end)
    assert.has_error(function() core.format_http_date(1e12) end)
    assert.has_error(function() core.format_http_date(0 / 0) end)
    assert.has_error(function() core.format_http_date("soon") end)
  end)
end)

describe("Retry-After", function()
  it("reads delta-seconds", function()
    local v, form = core.parse_retry_after("120")
    assert.equal(120, v)
    assert.equal("delta", form)
    assert.same({ 0, "delta" }, { core.parse_retry_after("0") })
    assert.same({ 42, "delta" }, { core.parse_retry_after(" 42 ") })
    assert.same({ 2147483648, "delta" }, { core.parse_retry_after("2147483648") })
    assert.same({ 7, "delta" }, { core.parse_retry_after("007") })
  end)

  it("reads an HTTP-date, which is server time", function()
    assert.same({ 784111777, "date" }, { core.parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT") })
    assert.same({ 784111777, "date" }, { core.parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT") })
  end)

  for _, s in ipairs({ "-1", "1.5", "1e3", "+5", "5s", "", " ", "0x10", "soon",
    "2147483649", "99999999999999999999999999", "12 34", "Sun, 31 Feb 1994 08:49:37 GMT" }) do
    it("rejects " .. string.format("%q", s), function()
      local v, msg, kind = core.parse_retry_after(s)
      assert.is_nil(v)
      assert.equal("protocol", kind)
      assert.is_string(msg)
    end)
  end
end)
