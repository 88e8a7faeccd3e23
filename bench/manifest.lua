-- wrk script for the manifest workloads: GET or HEAD (BENCH_METHOD) with the Accept header real
-- clients send, and one machine-readable summary line for bench/workloads.py.
wrk.method = os.getenv("BENCH_METHOD") or "GET"
wrk.headers["Accept"] = "application/vnd.oci.image.manifest.v1+json, "
  .. "application/vnd.docker.distribution.manifest.v2+json"

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d errors_connect=%d errors_read=%d errors_write=%d "
      .. "errors_status=%d errors_timeout=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
