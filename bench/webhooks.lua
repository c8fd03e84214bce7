-- Replays pre-signed webhooks from a file ("<hex signature>\t<json body>" per line).
-- Each wrk thread takes every n-th line, so no two requests carry the same event id.
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

function init(args)
  local path, threads, target = args[1], tonumber(args[2]), args[3]
  requests = {}
  local line_no = 0
  for line in io.lines(path) do
    if line_no % threads == id then
      local signature, body = line:match("^(%x+)\t(.*)$")
      requests[#requests + 1] = wrk.format("POST", target,
        { ["Content-Type"] = "application/json", ["X-Webhook-Signature"] = signature }, body)
    end
    line_no = line_no + 1
  end
  sent = 0
end

function request()
  sent = sent + 1
  return requests[(sent - 1) % #requests + 1]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, "non_2xx": %d, "socket_errors": %d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), e.status,
    e.connect + e.read + e.write + e.timeout))
end
