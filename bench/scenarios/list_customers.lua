-- GET /v1/customers?limit=10 (the newest ten customers of the account).
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

function init(args)
  C.init_thread()
end

function request()
  return wrk.format("GET", "/v1/customers?limit=10", C.get_headers())
end
