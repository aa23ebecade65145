-- The CRUD baseline (issue 12): POST /crud/{id} on bench/baselines/bare_app.py, one transaction per
-- request (INSERT the entry, UPSERT the balance), with the same headers and body as an AdjustBalance.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local ids
local body = "amount=" .. C.amount .. "&currency=usd&description=bench+adjustment"

function init(args)
  C.init_thread()
  ids = C.load_ids()
end

function request()
  return wrk.format("POST", "/crud/" .. ids[math.random(1, #ids)], C.post_headers(), body)
end
