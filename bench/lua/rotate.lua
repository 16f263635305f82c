-- refresh_token with rotation: every answer carries the next refresh token, which goes back into the
-- thread's pool; every request takes one out. BENCH_FILE holds the first tokens (one per line, at
-- least as many per thread as connections), BENCH_BODY has "{token}" where the token goes.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local pool, head, tail = {}, 1, 0

function init(_)
  local threads_n = tonumber(os.getenv("BENCH_THREADS") or "1")
  local n = 0
  for line in io.lines(os.getenv("BENCH_FILE")) do
    if n % threads_n == id and line ~= "" then
      tail = tail + 1
      pool[tail] = line
    end
    n = n + 1
  end
end

function request()
  if head > tail then
    -- Only after failed answers (each loses a token): stop rather than send requests bound to fail.
    wrk.thread:stop()
    return wrk.format(method, path, headers, (body:gsub("{token}", "", 1)))
  end
  local token = pool[head]
  pool[head] = nil
  head = head + 1
  return wrk.format(method, path, headers, (body:gsub("{token}", token, 1)))
end

function response(status, _, response_body)
  check(status)
  if status == 200 then
    local token = response_body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token then
      tail = tail + 1
      pool[tail] = token
    end
  end
end
