-- Loaded by wrk (-s): prints wrk's summary as one JSON line, so the harness reads figures,
-- not a text report meant for people. Latencies arrive in microseconds; we print milliseconds.
done = function(summary, latency, requests)
  local e = summary.errors
  local function ms(us) return us / 1000.0 end
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d, "status": %d}, ' ..
    '"latency_ms": {"p50": %.3f, "p90": %.3f, "p99": %.3f, "p99.9": %.3f, ' ..
    '"max": %.3f, "mean": %.3f}}\n',
    summary.requests, summary.duration / 1e6, summary.bytes,
    e.connect, e.read, e.write, e.timeout, e.status,
    ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
    ms(latency:percentile(99.9)), ms(latency.max), ms(latency.mean)))
end
