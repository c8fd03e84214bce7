-- Replays pre-signed webhooks from a requests file (the format of bench/loadgen.py): one request
-- per line, tab-separated fields, the last the JSON body, the others headers ("Name: value"); a field
-- without ": " is an X-Webhook-Signature value (the original "<hex signature>\t<json body>" lines).
-- Each wrk thread takes every n-th line, so no two requests carry the same event id.
local thread_count = 0

function setup(thread)
  thread:set("id", thread_count)
  thread_count = thread_count + 1
end

function parse_line(line)
  local fields = {}
  for field in string.gmatch(line, "[^\t\r]+") do
    fields[#fields + 1] = field
  end
  local body = table.remove(fields)
  local headers = { ["Content-Type"] = "application/json" }
  for _, field in ipairs(fields) do
    local name, value = field:match("^([^:]+): (.*)$")
    if name then
      headers[name] = value
    else
      headers["X-Webhook-Signature"] = field
    end
  end
  return headers, body
end

function init(args)
  local path, threads, target = args[1], tonumber(args[2]), args[3]
  requests = {}
  local line_no = 0
  for line in io.lines(path) do
    if line_no % threads == id then
      local headers, body = parse_line(line)
      requests[#requests + 1] = wrk.format("POST", target, headers, body)
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
