-- One fixed request, built once (discovery, JWKS, client_credentials, introspection, userinfo).
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")

local prepared = nil

function request()
  if prepared == nil then
    prepared = wrk.format(method, path, headers, body ~= "" and body or nil)
  end
  return prepared
end

function response(status, _, _)
  check(status)
end
