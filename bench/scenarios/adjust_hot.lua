-- POST /v1/customers/{id}/balance_transactions (AdjustBalance), every request on ONE customer.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local path = "/v1/customers/" .. (os.getenv("BENCH_HOT_ID") or "cus_missing") .. "/balance_transactions"
local body = "amount=" .. C.amount .. "&currency=usd&description=hot+adjustment"

function init(args)
  C.init_thread()
end

function request()
  return wrk.format("POST", path, C.post_headers(), body)
end
