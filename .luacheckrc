std = "max"
codes = true
max_line_length = 120
exclude_files = { "build/**" }
files["spec/**"] = { std = "+busted" }
files["examples/openresty/**"] = { globals = { "ngx" } }
files["lua/skewguard/transport/ngx.lua"] = { globals = { "ngx" } }
files["lua/skewguard/store/ngx_shared.lua"] = { globals = { "ngx" } }
files["tools/standin/**"] = { globals = { "ngx" } }
files["spec/support/ngx_*.lua"] = { globals = { "ngx" } }
files["lua/skewguard/transport/init.lua"] = { read_globals = { "ngx" } }
