-- wrk script for benches/soak.sh: a paced mix of valid, invalid and expired bearer tokens,
-- with statuses counted per kind of token.
--
--   wrk -t N -c N -s benches/soak.lua URL -- VALID_FILE EXPIRED_FILE RATE MIX N
--
-- VALID_FILE / EXPIRED_FILE: one token a line. RATE: requests/s for the whole run, 0 = as
-- fast as possible. N: the thread count again (a thread's share of RATE). MIX: "valid,invalid,expired" weights, e.g. "60,20,20". Invalid tokens
-- are random b64tokens, a new one for every request (each is a verifier miss and then a
-- negative cache entry: what a token-guessing client does to the cache).
--
-- Run it with as many threads as connections (-t N -c N): each thread then has one
-- connection and one request in flight, so a response always answers the thread's last
-- request and can be counted against that request's kind.
--
-- Pacing: wrk has no rate option (wrk2 has), so each thread keeps its own schedule of
-- RATE/N requests per second and `delay()` waits until the next slot (monotonic clock via
-- LuaJIT's FFI). A thread that falls behind sends at once but never makes up more than a
-- second of missed slots, so a stall is not followed by a burst.

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } soak_timespec;
  int clock_gettime(int clk_id, soak_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("soak_timespec")
local function now_ms()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("id", thread_count)
  table.insert(threads, thread)
end

local function read_lines(path)
  local lines = {}
  for line in io.lines(path) do
    if line ~= "" then
      table.insert(lines, line)
    end
  end
  assert(#lines > 0, "no tokens in " .. path)
  return lines
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/"

local function random_token()
  local out = {}
  for i = 1, 43 do
    local n = math.random(1, #B64)
    out[i] = B64:sub(n, n)
  end
  return table.concat(out)
end

function init(args)
  valid = read_lines(args[1])
  expired = read_lines(args[2])
  local rate = tonumber(args[3]) or 0
  local weights = {}
  for w in string.gmatch(args[4] or "60,20,20", "%d+") do
    table.insert(weights, tonumber(w))
  end
  w_valid, w_invalid, w_expired = weights[1], weights[2], weights[3]
  w_total = w_valid + w_invalid + w_expired
  -- `id` and the thread count are only known here through what setup() set.
  math.randomseed(id * 7919 + os.time())
  interval = 0
  if rate > 0 then
    interval = 1000 / (rate / tonumber(args[5]))
  end
  next_at = now_ms()
  last_kind = nil
  counts = {}
  sent = { valid = 0, invalid = 0, expired = 0 }
end

function delay()
  if interval == 0 then
    return 0
  end
  local now = now_ms()
  if next_at < now - 1000 then
    next_at = now - 1000
  end
  next_at = next_at + interval
  local wait = next_at - now
  if wait < 0 then
    return 0
  end
  return wait
end

function request()
  local r = math.random(1, w_total)
  local token
  if r <= w_valid then
    last_kind = "valid"
    token = valid[math.random(1, #valid)]
  elseif r <= w_valid + w_invalid then
    last_kind = "invalid"
    token = random_token()
  else
    last_kind = "expired"
    token = expired[math.random(1, #expired)]
  end
  sent[last_kind] = sent[last_kind] + 1
  return wrk.format("GET", nil, { ["Authorization"] = "Bearer " .. token })
end

function response(status, headers, body)
  local key = (last_kind or "unknown") .. " " .. status
  counts[key] = (counts[key] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  local total_sent = { valid = 0, invalid = 0, expired = 0 }
  for _, thread in ipairs(threads) do
    for key, n in pairs(thread:get("counts")) do
      total[key] = (total[key] or 0) + n
    end
    for kind, n in pairs(thread:get("sent")) do
      total_sent[kind] = total_sent[kind] + n
    end
  end
  local keys = {}
  for key in pairs(total) do
    table.insert(keys, key)
  end
  table.sort(keys)
  -- Machine-readable lines for soak.sh, one per kind and status.
  for _, key in ipairs(keys) do
    io.write(string.format("SOAK status %s %d\n", key, total[key]))
  end
  for _, kind in ipairs({ "valid", "invalid", "expired" }) do
    io.write(string.format("SOAK sent %s %d\n", kind, total_sent[kind]))
  end
  io.write(string.format("SOAK requests %d\n", summary.requests))
  io.write(string.format("SOAK duration_us %d\n", summary.duration))
  -- Socket errors and timeouts only: wrk's `status` errors are every 4xx/5xx, counted above.
  io.write(string.format("SOAK socket_errors %d\n",
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
  io.write(string.format("SOAK latency_p50_us %d\n", latency:percentile(50)))
  io.write(string.format("SOAK latency_p99_us %d\n", latency:percentile(99)))
end
