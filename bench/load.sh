#!/usr/bin/env bash
# Single-point POST /encode under wrk (64 connections, 2 threads): our service with dynamic batching on and
# off, and bench/reference_app.py, alternating, two rounds each; every request carries a fresh random point
# (no cache hits). Prints the table and writes it into docs/BENCHMARKS.md (section "load").
#   bash bench/load.sh [seconds]        needs wrk (Debian: apt-get install wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
lua=$(mktemp --suffix .lua)
cat > "$lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local v = {}
  for i = 1, 64 do v[i] = string.format("%.4f", math.random()) end
  return wrk.format(nil, nil, nil, '{"model":"digits","x":[[' .. table.concat(v, ",") .. ']]}')
end
LUA
trap 'kill $(jobs -p) 2>/dev/null; rm -f "$lua"' EXIT
port_busy() { curl -s -o /dev/null http://127.0.0.1:8199/ ; }
measure() {  # name, command...
  local name=$1; shift
  if port_busy; then echo "port 8199 is taken: stop what listens there" >&2; exit 1; fi
  "$@" > /dev/null 2>&1 & local pid=$!
  for _ in $(seq 150); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8199/openapi.json || true)" = 200 ] && break
    sleep 0.2
  done
  wrk -t2 -c64 -d2s -s "$lua" http://127.0.0.1:8199/encode > /dev/null
  wrk -t2 -c64 -d"${seconds}s" --latency -s "$lua" http://127.0.0.1:8199/encode \
    | awk -v n="$name" '/Requests\/sec/ {r=$2} / 50%/ {p50=$2} / 99%/ {p99=$2} /Non-2xx/ {e=$NF}
        END {printf "| %s | %.0f | %s | %s | %s |\n", n, r, p50, p99, (e ? e : 0)}'
  kill "$pid"; wait "$pid" 2>/dev/null || true
  while port_busy; do sleep 0.1; done
}
table=$(mktemp)
{
trap 'kill $(jobs -p) 2>/dev/null' EXIT  # this block runs in a subshell of its own: stop its servers too
echo "| stack | req/s | p50 | p99 | non-2xx |"
echo "|---|---|---|---|---|"
for _ in 1 2; do
  measure "vae-serve, dynamic batching on" env VAE_PORT=8199 VAE_LOG_LEVEL=warning VAE_BATCHING=on .venv/bin/python -m service
  measure "vae-serve, dynamic batching off" env VAE_PORT=8199 VAE_LOG_LEVEL=warning VAE_BATCHING=off .venv/bin/python -m service
  measure "reference FastAPI app" .venv/bin/python -m uvicorn bench.reference_app:app --port 8199 --log-level warning
done
} | tee "$table"
{
  echo "## Single-point /encode under load"
  echo
  echo "\`bash bench/load.sh $seconds\` on $(date -u +%F), $(uname -m), $(nproc) cores, wrk with 64 connections and 2"
  echo "threads, $seconds s after a 2 s warm-up, each request a fresh random point (no cache hits); \`make serve\`"
  echo "(one uvicorn worker, in-process cache) with VAE_BATCHING on and off, alternating with"
  echo "\`bench/reference_app.py\` (the plainest FastAPI \`async def\` + pydantic + ONNX Runtime encoder), two rounds."
  echo "wrk shares the two cores with the server."
  echo
  cat "$table"
} | .venv/bin/python -m bench.report load
rm -f "$table"
