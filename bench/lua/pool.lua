-- Single-use requests prepared beforehand (authorization codes, login forms), one per line of
-- BENCH_FILE as "path<TAB>cookie<TAB>body" (an empty path means BENCH_PATH). Each wrk thread takes
-- every n-th line; a thread that has used all of its lines stops, so the run ends early rather than
-- replaying a spent code (wrk then reports the time it actually ran).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local items, next_item = {}, 1

function init(_)
  local threads_n = tonumber(os.getenv("BENCH_THREADS") or "1")
  local n = 0
  for line in io.lines(os.getenv("BENCH_FILE")) do
    if n % threads_n == id then
      local item_path, cookie, item_body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
      local item_headers = {}
      for k, v in pairs(headers) do
        item_headers[k] = v
      end
      if cookie ~= "" then
        item_headers["Cookie"] = cookie
      end
      items[#items + 1] = wrk.format(method, item_path ~= "" and item_path or path, item_headers, item_body)
    end
    n = n + 1
  end
end

function request()
  local item = items[next_item]
  if item == nil then
    wrk.thread:stop()
    return items[#items] -- never answered: the thread's loop ends before the reply is read
  end
  next_item = next_item + 1
  return item
end

function response(status, _, _)
  check(status)
end
