-- Shared by the benchmark's wrk scripts: the request's fixed parts from the environment, the check
-- that every answer has the expected status (wrk itself only counts 4xx/5xx and socket errors), and
-- one machine-readable result line for the harness (bench/wrk.py).
--
-- Environment: BENCH_METHOD, BENCH_PATH, BENCH_BODY, BENCH_HEADERS ("Name: value" lines),
-- BENCH_EXPECT (the status every answer must have).

method = os.getenv("BENCH_METHOD") or "GET"
path = os.getenv("BENCH_PATH") or "/"
body = os.getenv("BENCH_BODY") or ""
expect = tonumber(os.getenv("BENCH_EXPECT") or "200")
headers = {}
for line in (os.getenv("BENCH_HEADERS") or ""):gmatch("[^\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  if name then
    headers[name] = value
  end
end

-- Per thread: how many answers had another status (read back by done() through thread:get).
unexpected = 0
local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function check(status)
  if status ~= expect then
    unexpected = unexpected + 1
  end
end

function done(summary, latency, requests)
  local bad, threads_n = 0, #threads
  for _, thread in ipairs(threads) do
    bad = bad + (thread:get("unexpected") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_RESULT {"requests": %d, "duration_us": %d, "bytes": %d, "threads": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"unexpected": %d, "latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d, "mean": %.1f}}\n',
    summary.requests, summary.duration, summary.bytes, threads_n,
    e.connect, e.read, e.write, e.status, e.timeout, bad,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
