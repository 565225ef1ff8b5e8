-- Randomness, SHA-256 and HMAC-SHA256 through LuaJIT's FFI into libcrypto, so the
-- stand-in needs nothing from the library it is used to test.
local ffi = require "ffi"

ffi.cdef [[
int RAND_bytes(unsigned char *buf, int num);
unsigned char *SHA256(const unsigned char *d, size_t n, unsigned char *md);
const void *EVP_sha256(void);
unsigned char *HMAC(const void *evp_md, const void *key, int key_len,
                    const unsigned char *d, size_t n, unsigned char *md,
                    unsigned int *md_len);
]]

local function load_crypto()
  for _, name in ipairs { "crypto", "libcrypto.so.3", "libcrypto.so.1.1" } do
    local ok, lib = pcall(ffi.load, name)
    if ok then return lib end
  end
  error("standin: cannot load libcrypto")
end

local C = load_crypto()
local digest = ffi.new("unsigned char[32]")
local digest_len = ffi.new("unsigned int[1]")

local M = {}

function M.random_bytes(n)
  local buf = ffi.new("unsigned char[?]", n)
  if C.RAND_bytes(buf, n) ~= 1 then error("standin: RAND_bytes failed") end
  return ffi.string(buf, n)
end

function M.sha256(data)
  C.SHA256(data, #data, digest)
  return ffi.string(digest, 32)
end

function M.hmac_sha256(key, data)
  if C.HMAC(C.EVP_sha256(), key, #key, data, #data, digest, digest_len) == nil then
    error("standin: HMAC failed")
  end
  return ffi.string(digest, digest_len[0])
end

function M.b64url(data)
  return (ngx.encode_base64(data, true):gsub("[+/]", { ["+"] = "-", ["/"] = "_" }))
end

-- A random token of n bytes of entropy, base64url: opaque, URL- and header-safe.
function M.token(n)
  return M.b64url(M.random_bytes(n or 24))
end

function M.uuid()
  local b = { M.random_bytes(16):byte(1, 16) }
  b[7] = b[7] % 16 + 0x40 -- version 4
  b[9] = b[9] % 64 + 0x80 -- RFC 4122 variant
  return string.format("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
    b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10],
    b[11], b[12], b[13], b[14], b[15], b[16])
end

return M
