local core = require "skewguard.core"
local jwt = require "skewguard.jwt"

-- RFC 4648 §10 test vectors; they contain no '+' or '/' so the url alphabet is the same.
local RFC4648 = {
  { "", "" }, { "f", "Zg" }, { "fo", "Zm8" }, { "foo", "Zm9v" }, { "foob", "Zm9vYg" },
  { "fooba", "Zm9vYmE" }, { "foobar", "Zm9vYmFy" },
}

describe("base64url", function()
  it("encodes the RFC 4648 §10 vectors without padding", function()
    for _, v in ipairs(RFC4648) do assert.equal(v[2], core.b64url_encode(v[1])) end
  end)

  it("decodes the RFC 4648 §10 vectors, unpadded and padded", function()
    for _, v in ipairs(RFC4648) do
      assert.equal(v[1], core.b64url_decode(v[2]))
      local padded = v[2] .. string.rep("=", (4 - #v[2] % 4) % 4)
      assert.equal(v[1], core.b64url_decode(padded))
    end
  end)

  it("uses the url alphabet: - and _ where standard base64 has + and /", function()
    assert.equal("-_8", core.b64url_encode("\251\255"))
    assert.equal("\251\255", core.b64url_decode("-_8"))
    assert.equal("\251\239\190", core.b64url_decode("----"))
    assert.equal("\255\255\255", core.b64url_decode("____"))
  end)

  it("round-trips every byte value and every length up to 300", function()
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    local bytes = table.concat(all) .. table.concat(all):reverse()
    for len = 0, 300, 7 do
      local s = bytes:sub(1, len)
      local enc = core.b64url_encode(s)
      assert.is_nil(enc:find("[^A-Za-z0-9_-]"))
      assert.equal(s, core.b64url_decode(enc))
    end
    -- longer than one internal chunk (256 characters), with each tail length
    for extra = 0, 2 do
      local s = bytes:rep(3) .. bytes:sub(1, extra)
      assert.equal(s, core.b64url_decode(core.b64url_encode(s)))
    end
  end)

  local function rejects(input, pattern)
    local v, msg, kind = core.b64url_decode(input)
    assert.is_nil(v, "accepted " .. input)
    assert.equal("protocol", kind)
    assert.truthy(msg:find(pattern), msg)
  end

  it("rejects characters outside the url alphabet", function()
    rejects("Zm9v+g", "character")   -- standard alphabet
    rejects("Zm9v/g", "character")
    rejects("Zm 9v", "character")
    rejects("Zm9v\n", "character")
    rejects(" Zm9v", "character")
    rejects("Zm\0v", "character")
    rejects("Zm=v", "character")      -- padding in the middle
    rejects("Zm9vé", "character")
  end)

  it("rejects impossible lengths and bad padding", function()
    rejects("Z", "length")
    rejects("Zm9vY", "length")
    rejects("Zg=", "padding")         -- padding that does not complete a group
    rejects("Zg===", "padding")
    rejects("Zm9v====", "padding")
    rejects("=", "padding")
    rejects("Zm8==", "padding")
  end)

  it("rejects non-canonical encodings with stray bits", function()
    rejects("Zh", "non%-canonical")   -- 'f' is Zg; Zh has a low bit set
    rejects("Zm9", "non%-canonical")  -- 'fo' is Zm8
  end)

  it("raises on a non-string argument (misuse)", function()
    assert.has_error(function() core.b64url_decode({}) end)
    assert.has_error(function() core.b64url_encode() end)
  end)
end)

local function b64(s) return core.b64url_encode(s) end
local function make_jwt(header, payload, sig)
  return b64(header) .. "." .. b64(payload) .. "." .. (sig or b64("signature-bytes"))
end

describe("JWT", function()
  -- RFC 7519 §3.1 example.
  local rfc_token = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9" ..
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ" ..
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"

  it("splits the RFC 7519 §3.1 example and returns payload and header JSON", function()
    local payload, header = core.jwt_payload(rfc_token)
    assert.equal('{"iss":"joe",\r\n "exp":1300819380,\r\n "http://example.com/is_root":true}', payload)
    assert.equal('{"typ":"JWT",\r\n "alg":"HS256"}', header)
  end)

  it("decodes claims with lua-cjson", function()
    local claims, header = jwt.claims(rfc_token)
    assert.equal("joe", claims.iss)
    assert.equal(1300819380, claims.exp)
    assert.equal(true, claims["http://example.com/is_root"])
    assert.equal("HS256", header.alg)
  end)

  it("accepts an unsecured JWT with an empty signature", function()
    local claims = jwt.claims(make_jwt('{"alg":"none"}', '{"iat":1700000000}', ""))
    assert.equal(1700000000, claims.iat)
  end)

  local secret_token = "opaque-SECRET-token-value-1234567890"
  local bad = {
    ["an opaque token"] = secret_token,
    ["an empty string"] = "",
    ["two segments"] = b64('{"alg":"none"}') .. "." .. b64('{"a":1}'),
    ["four segments"] = make_jwt('{"a":1}', '{"b":2}') .. ".x",
    ["a JWE (five segments)"] = "eyJhIjoxfQ.a.b.c.d",
    ["an empty header"] = "." .. b64('{"a":1}') .. ".sig",
    ["an empty payload"] = b64('{"a":1}') .. "..sig",
    ["bad base64url in the payload"] = b64('{"a":1}') .. ".abc$." .. b64("x"),
    ["bad base64url in the signature"] = make_jwt('{"a":1}', '{"b":2}', "si+g"),
    ["a payload that is not an object"] = make_jwt('{"alg":"none"}', '[1,2]'),
    ["a header that is not an object"] = make_jwt('"x"', '{"b":2}'),
    ["a token with the secret in it and dots"] = secret_token .. "." .. secret_token .. "." .. secret_token,
  }
  for what, token in pairs(bad) do
    it("rejects " .. what .. " with nil, err, and never echoes the token", function()
      local payload, msg, kind = core.jwt_payload(token)
      assert.is_nil(payload)
      assert.equal("protocol", kind)
      assert.is_string(msg)
      local claims, err = jwt.claims(token)
      assert.is_nil(claims)
      assert.equal("protocol", err.kind)
      if #token > 0 then
        assert.is_nil(tostring(err):find(token, 1, true))
        assert.is_nil(tostring(err):find("SECRET", 1, true))
      end
    end)
  end

  it("rejects payloads that are not valid JSON", function()
    local claims, err = jwt.claims(make_jwt('{"alg":"none"}', '{"exp": 12,}'))
    assert.is_nil(claims)
    assert.equal("protocol", err.kind)
  end)

  it("rejects time claims that are not finite numbers", function()
    for _, bad_claims in ipairs({ '{"exp":"1700000000"}', '{"nbf":true}', '{"iat":{}}',
      '{"exp":Infinity}', '{"exp":NaN}', '{"exp":1e400}' }) do
      local claims, err = jwt.claims(make_jwt('{"alg":"none"}', bad_claims))
      assert.is_nil(claims, bad_claims)
      assert.equal("protocol", err.kind)
    end
  end)

  it("raises when the token is not a string (misuse)", function()
    assert.has_error(function() jwt.claims(nil) end)
    assert.has_error(function() core.jwt_payload() end)
  end)
end)

describe("fingerprint", function()
  it("is the first 8 hex digits of SHA-256", function()
    -- SHA-256("abc") = ba7816bf 8f01cfea ... (FIPS 180-2 example)
    assert.equal("ba7816bf", core.fingerprint("abc"))
    assert.equal("e3b0c442", core.fingerprint(""))
  end)
end)
