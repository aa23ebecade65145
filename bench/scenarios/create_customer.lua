-- POST /v1/customers (CreateCustomer): a new customer per request.
local C = dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
local n = 0

function init(args)
  C.init_thread()
end

function request()
  n = n + 1
  local body = string.format(
    "email=bench%%2B%d.%d.%d%%40example.com&name=Bench+Customer&description=load+test&metadata%%5Bplan%%5D=pro",
    C.tag, wrk.thread:get("tid") or 0, n)
  return wrk.format("POST", "/v1/customers", C.post_headers(), body)
end
