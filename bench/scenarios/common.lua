-- Shared by every wrk scenario: the headers stripe-python 16.1.0 sends, unique Idempotency-Keys,
-- customer ids from a file, and a machine-readable summary line (BENCH_JSON) for bench/run.py.
--
-- Environment (set by bench/run.py):
--   BENCH_KEY     secret API key (sk_test_...)
--   BENCH_TAG     32-bit integer unique to this cell: keeps Idempotency-Keys unique across cells
--   BENCH_IDS     file with one customer id per line (spread, retrieve)
--   BENCH_HOT_ID  the hot customer's id
--   BENCH_AMOUNT  amount of each balance adjustment (minor units)

local M = {}

M.key = os.getenv("BENCH_KEY") or "sk_test_missing"
M.tag = tonumber(os.getenv("BENCH_TAG") or "0") or 0
M.amount = os.getenv("BENCH_AMOUNT") or "100"

local counter = 0
local tid = 0

-- What stripe-python 16.1.0 (requests client) puts on every call.
M.base_headers = {
  ["Authorization"] = "Bearer " .. M.key,
  ["Stripe-Version"] = "2026-10-28.endive",
  ["User-Agent"] = "Stripe/v1 PythonBindings/16.1.0",
  ["X-Stripe-Client-User-Agent"] =
    '{"bindings_version": "16.1.0", "lang": "python", "httplib": "requests", "lang_version": "3.11.7"}',
  ["Accept"] = "*/*",
  ["Accept-Encoding"] = "gzip, deflate",
}

function M.init_thread()
  tid = tonumber(wrk.thread:get("tid") or 0) or 0
  math.randomseed(M.tag * 7919 + tid * 104729 + os.time())
end

-- stripe-python's format (uuid4-like, 8-4-4-4-12 hex); unique per cell (tag), thread and request.
function M.idempotency_key()
  counter = counter + 1
  return string.format("%08x-%04x-%04x-%04x-%012x",
    M.tag % 0x100000000, tid % 0x10000, math.random(0, 0xffff), math.random(0, 0xffff), counter)
end

function M.get_headers()
  return M.base_headers
end

function M.post_headers()
  local h = {}
  for k, v in pairs(M.base_headers) do h[k] = v end
  h["Content-Type"] = "application/x-www-form-urlencoded"
  h["Idempotency-Key"] = M.idempotency_key()
  return h
end

function M.load_ids()
  local path = os.getenv("BENCH_IDS")
  local ids = {}
  if path then
    for line in io.lines(path) do
      if #line > 0 then ids[#ids + 1] = line end
    end
  end
  if #ids == 0 then error("no customer ids in BENCH_IDS=" .. tostring(path)) end
  return ids
end

-- wrk entry points shared by all scenarios ------------------------------------------------------

local threads = {}
local next_tid = 0

function setup(thread)
  next_tid = next_tid + 1
  thread:set("tid", next_tid)
  threads[#threads + 1] = thread
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "status_errors": %d, "timeouts": %d, ' ..
    '"p50_us": %d, "p90_us": %d, "p99_us": %d, "max_us": %d, "mean_us": %.1f, "threads": %d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    #threads))
end

return M
