-- wrk script for benches/cold_path.sh: issues client_credentials tokens and writes them
-- down, one a line.
--
--   wrk -t T -c C -d SECONDS -s benches/issue_tokens.lua URL/oauth/token -- FILE BASIC
--
-- Thread i appends each token it is given to FILE.i. BASIC is base64("client_id:secret")
-- for `Authorization: Basic`. wrk runs for its whole duration whatever a thread does, so
-- the caller runs it in short chunks until it has enough tokens.

local count = 0

function setup(thread)
  count = count + 1
  thread:set("id", count)
end

function init(args)
  out = assert(io.open(args[1] .. "." .. id, "a"))
  wrk.method = "POST"
  wrk.body = "grant_type=client_credentials"
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  wrk.headers["Authorization"] = "Basic " .. args[2]
end

function response(status, headers, body)
  local token = status == 200 and body:match('"access_token":"([^"]+)"')
  if token then
    out:write(token, "\n")
  end
end

function done(summary, latency, requests)
  -- The threads' files are closed (and flushed) when their Lua states go.
end
