-- wrk script for benches/cold_path.sh: bearer requests with tokens from a file.
--
--   wrk -t T -c C -s benches/cold_path.lua URL -- once FILE OFFSET T
--   wrk -t T -c C -s benches/cold_path.lua URL -- same FILE OFFSET T
--
-- once: every request carries a token not sent before: thread i (1..T) sends the tokens on
--   lines OFFSET+i, OFFSET+i+T, ... of FILE and stops itself when it runs out. done() prints
--   `USED n` (lines consumed from OFFSET on: the next run starts at OFFSET+n) and
--   `EXHAUSTED k` (threads that ran out and stopped: wrk still waits out its duration, so
--   the run then had idle time at its end; its per-request figures still hold).
-- same: the same script work per request, but always the token on line OFFSET+1 (the warm
--   path: after the first request every one is a cache hit).
--
-- Both modes build each request in request() alike, so wrk spends the same per request
-- and the server sees the same arrival pattern; no response() (wrk then skips handing
-- bodies to Lua).

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end

function init(args)
  mode = args[1]
  assert(mode == "once" or mode == "same", "mode must be once or same")
  lines = {}
  for line in io.lines(args[2]) do
    if line ~= "" then
      lines[#lines + 1] = line
    end
  end
  offset, stride = tonumber(args[3]), tonumber(args[4])
  assert(#lines > offset, "no tokens past line " .. offset .. " in " .. args[2])
  sent, exhausted = 0, 0
end

function request()
  local line = offset + 1
  if mode == "once" then
    line = offset + id + sent * stride
    if line > #lines then
      -- Out of fresh tokens: stop this thread rather than send one twice.
      exhausted = 1
      wrk.thread:stop()
      line = #lines
    else
      sent = sent + 1
    end
  end
  return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. lines[line] })
end

function done(summary, latency, requests)
  -- done() runs in the main Lua state, where init() never ran: ask a thread for the mode.
  if #threads == 0 or threads[1]:get("mode") ~= "once" then
    return
  end
  local most, ran_out = 0, 0
  for _, t in ipairs(threads) do
    most = math.max(most, t:get("sent") or 0)
    ran_out = ran_out + (t:get("exhausted") or 0)
  end
  io.write(string.format("USED %d\nEXHAUSTED %d\n", most * #threads, ran_out))
end
