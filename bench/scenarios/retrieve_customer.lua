-- GET /v1/customers/{id} on a customer drawn at random from BENCH_IDS.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local ids

function init(args)
  C.init_thread()
  ids = C.load_ids()
end

function request()
  return wrk.format("GET", "/v1/customers/" .. ids[math.random(1, #ids)], C.get_headers())
end
