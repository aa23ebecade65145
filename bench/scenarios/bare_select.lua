-- Like-for-like framework ceiling for retrieve: GET /customers/{id} on bench/baselines/bare_app.py
-- (the same SELECT as the service's retrieve, the row encoded as JSON, nothing else).
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local ids

function init(args)
  C.init_thread()
  ids = C.load_ids()
end

function request()
  return wrk.format("GET", "/customers/" .. ids[math.random(1, #ids)], C.get_headers())
end
