-- POST /v1/customers/{id}/balance_transactions (AdjustBalance) on a customer drawn at random from
-- the pre-created set in BENCH_IDS (10,000 by default).
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local ids
local body = "amount=" .. C.amount .. "&currency=usd&description=bench+adjustment"

function init(args)
  C.init_thread()
  ids = C.load_ids()
end

function request()
  local id = ids[math.random(1, #ids)]
  return wrk.format("POST", "/v1/customers/" .. id .. "/balance_transactions", C.post_headers(), body)
end
