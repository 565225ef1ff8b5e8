-- A throwaway nginx on 127.0.0.1 for transport specs: the caller gives the
-- server block body; this starts nginx (echo module loaded) on a free port in
-- a temp dir, optionally with a self-signed certificate for TLS + HTTP/2, and
-- stops it. Real server, real sockets: nothing of ours is faked.
local socket = require "socket"
local sys = require "support.sys"
local sh, read, write = sys.run, sys.read_file, sys.write_file

local M = {}

--- A port nothing listens on right now (bind to 0, read it, close).
M.free_port = sys.free_port

local function tempdir()
  local p = io.popen("mktemp -d /tmp/skewguard-nginx.XXXXXX")
  local dir = p:read("*l")
  p:close()
  return dir
end

--- Makes a self-signed certificate for 127.0.0.1 in `dir`; returns cert, key paths.
function M.self_signed(dir)
  local cert, key = dir .. "/cert.pem", dir .. "/key.pem"
  assert(sh("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 " ..
    "-subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " .. key .. " -out " .. cert ..
    " >/dev/null 2>&1"), "openssl req failed")
  return cert, key
end

--- opts.locations: nginx text inside `server {}`; opts.tls: serve HTTPS (HTTP/2).
-- Returns { url, port, dir, ca_file (tls), stop() }.
function M.start(opts)
  local dir = tempdir()
  local cert, key
  if opts.tls then cert, key = M.self_signed(dir) end
  local last_err
  for _ = 1, 5 do
    local port = M.free_port()
    local listen = opts.tls and ("listen 127.0.0.1:" .. port .. " ssl http2;\n" ..
      "ssl_certificate " .. cert .. ";\nssl_certificate_key " .. key .. ";\n")
      or ("listen 127.0.0.1:" .. port .. ";\n")
    write(dir .. "/nginx.conf", table.concat({
      "load_module /usr/lib/nginx/modules/ngx_http_echo_module.so;",
      "worker_processes 1;", "daemon on;", "pid " .. dir .. "/nginx.pid;",
      "error_log " .. dir .. "/error.log warn;",
      "events { worker_connections 64; }",
      "http {", "access_log off;",
      "client_body_temp_path " .. dir .. "/body;", "proxy_temp_path " .. dir .. "/proxy;",
      "fastcgi_temp_path " .. dir .. "/fcgi;", "uwsgi_temp_path " .. dir .. "/uwsgi;",
      "scgi_temp_path " .. dir .. "/scgi;",
      "keepalive_requests 10000;", "keepalive_timeout 60s;",
      "server {", listen, "root " .. dir .. "/www;", opts.locations or "", "}", "}", "" }, "\n"))
    sh("mkdir -p " .. dir .. "/www")
    if opts.files then for name, content in pairs(opts.files) do write(dir .. "/www/" .. name, content) end end
    -- workers may run as nobody when the suite runs as root
    sh("chmod -R a+rX " .. dir)
    if sh("env -u LD_PRELOAD nginx -p " .. dir .. " -c " .. dir .. "/nginx.conf -e " .. dir ..
      "/error.log >/dev/null 2>&1") then
      -- wait until it accepts connections
      for _ = 1, 200 do
        local c = socket.tcp()
        c:settimeout(0.05)
        local ok = c:connect("127.0.0.1", port)
        c:close()
        if ok then
          local scheme = opts.tls and "https" or "http"
          local server = { port = port, dir = dir, url = scheme .. "://127.0.0.1:" .. port, ca_file = cert }
          function server.stop()
            local pid = read(dir .. "/nginx.pid")
            if pid then sh("kill -TERM " .. pid:match("%d+") .. " 2>/dev/null") end
            for _ = 1, 100 do
              if not read(dir .. "/nginx.pid") then break end
              socket.sleep(0.02)
            end
            sh("rm -rf " .. dir)
          end
          return server
        end
        socket.sleep(0.02)
      end
    end
    last_err = read(dir .. "/error.log")
    local pid = read(dir .. "/nginx.pid")
    if pid then sh("kill -TERM " .. pid:match("%d+") .. " 2>/dev/null") end
  end
  sh("rm -rf " .. dir)
  error("nginx did not start: " .. tostring(last_err))
end

return M
