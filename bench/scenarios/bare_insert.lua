-- Framework ceiling: POST /insert on bench/baselines/bare_app.py (one INSERT per request), sent with
-- the same headers and a body of the same shape as an AdjustBalance.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local ids
local body = "amount=" .. C.amount .. "&currency=usd&description=bench+adjustment"

function init(args)
  C.init_thread()
  ids = C.load_ids()
end

function request()
  return wrk.format("POST", "/insert/" .. ids[math.random(1, #ids)], C.post_headers(), body)
end
