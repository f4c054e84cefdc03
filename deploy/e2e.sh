#!/usr/bin/env bash
# `docker compose up` for real: build the image from the project's Dockerfile, bring the stack up with the CPU
# override, call the service through the container, check that the answers land in the compose Redis, stop
# the stack and check that the server exited 0. Then check that a code change rebuilds without the dependency
# layer. Prints the image size, the build times and every phase's time.
#
#   bash deploy/e2e.sh            # what .ci/run does, after `make test`
#   bash deploy/e2e.sh --record   # the same with a cold build (--no-cache); writes the figures into the
#                                 # "Docker" section of docs/RELIABILITY.md (needs .venv)
#
# On our machines the engine comes from ../shared/docker/engine.sh (VAE_DOCKER_ENGINE overrides): no image
# registry, so the base images are local stand-ins, and no bridge network, so deploy/compose.e2e.yml puts
# every service on the host's network, on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ENGINE=${VAE_DOCKER_ENGINE:-$ROOT/../shared/docker/engine.sh}
RECORD=false
case "${1:-}" in
  --record) RECORD=true ;;
  "") ;;
  *) sed -n '2,13p' "$0"; exit 2 ;;
esac

PROJECT=vae-e2e
COMPOSE=(docker compose -p "$PROJECT" -f docker-compose.yml -f docker-compose.cpu.yml -f deploy/compose.e2e.yml)
IMAGE=$(sed -n 's/^    image: \(vae-serve:.*\)$/\1/p' docker-compose.yml)
REBUILD_TAG=vae-serve:e2e-rebuild
WORK=$(mktemp -d)
PHASES=()
STACK_UP=false

log() { echo "e2e: $*" >&2; }
fail() { echo "e2e: FAILED: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$1" "$(now)"; }
phase_done() { PHASES+=("$1: $2 s"); log "$1: $2 s"; }

cleanup() {
  local rc=$?
  if [ "$STACK_UP" = true ]; then
    if [ "$rc" -ne 0 ]; then
      log "the stack's last log lines:"
      timeout 60 "${COMPOSE[@]}" logs --no-color --tail 40 >&2 || true
    fi
    timeout 120 "${COMPOSE[@]}" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 \
      || log "could not take the stack down: docker compose -p $PROJECT down"
  fi
  docker image rm -f "$REBUILD_TAG" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT

# --- the engine and the stand-ins for the base images -------------------------------------------------
[ -x "$ENGINE" ] || [ -f "$ENGINE" ] || fail "no Docker engine script at $ENGINE (set VAE_DOCKER_ENGINE)"
start=$(now)
exports=$(timeout 600 bash "$ENGINE" start) || fail "the Docker engine did not start (see $ENGINE)"
eval "$exports"
bases=$(sed -n 's/^FROM \([^ ]*\).*/\1/p' Dockerfile | grep -v -x -F "$(sed -n 's/^FROM .* AS \(.*\)$/\1/p' Dockerfile)" || true)
redis_image=$(sed -n 's/^    image: \(redis:.*\)$/\1/p' docker-compose.yml)
[ -n "$bases" ] && [ -n "$redis_image" ] && [ -n "$IMAGE" ] || fail "could not read the image names from Dockerfile and docker-compose.yml"
# shellcheck disable=SC2086
timeout 600 bash "$ENGINE" standin $bases >/dev/null || fail "could not tag the stand-in for $bases"
timeout 600 bash "$ENGINE" standin-redis "$redis_image" >/dev/null || fail "could not tag the stand-in for $redis_image"
phase_done "engine and stand-ins" "$(since "$start")"

# --- free ports (never 6379 or 8000: a Redis and a dev server may be there) ------------------------------
read -r E2E_VAE_PORT E2E_REDIS_PORT < <(python3 - <<'EOF'
import socket
sockets = []
while len(sockets) < 2:
    s = socket.socket(); s.bind(("127.0.0.1", 0))
    if s.getsockname()[1] not in (6379, 8000):
        sockets.append(s)
print(*(s.getsockname()[1] for s in sockets))
EOF
)
export E2E_VAE_PORT E2E_REDIS_PORT BUILDKIT_PROGRESS=plain
URL=http://127.0.0.1:$E2E_VAE_PORT
log "service on 127.0.0.1:$E2E_VAE_PORT, Redis on 127.0.0.1:$E2E_REDIS_PORT (host network)"

# --- build -------------------------------------------------------------------------------------------
build_flags=()
[ "$RECORD" = true ] && build_flags=(--no-cache)
start=$(now)
timeout 900 "${COMPOSE[@]}" build "${build_flags[@]}" vae > "$WORK/build.log" 2>&1 \
  || { tail -30 "$WORK/build.log" >&2; fail "docker compose build"; }
BUILD_S=$(since "$start")
phase_done "build$([ "$RECORD" = true ] && echo ' (cold, --no-cache)')" "$BUILD_S"
IMAGE_BYTES=$(docker image inspect -f '{{.Size}}' "$IMAGE")
IMAGE_MB=$((IMAGE_BYTES / 1000000))
log "image $IMAGE: $IMAGE_MB MB"
docker run --rm --network none --entrypoint /opt/venv/bin/python "$IMAGE" -c 'import importlib.util as u, sys; sys.exit(u.find_spec("torch") is not None)' \
  || fail "torch is in the serving image"

# --- up ----------------------------------------------------------------------------------------------
start=$(now)
STACK_UP=true
timeout 300 "${COMPOSE[@]}" up --detach --no-build --wait --wait-timeout 240 > "$WORK/up.log" 2>&1 \
  || { tail -20 "$WORK/up.log" >&2; fail "the stack did not become healthy (docker compose up --wait)"; }
UP_S=$(since "$start")
phase_done "up until healthy" "$UP_S"

cid=$("${COMPOSE[@]}" ps -q vae)
[ "$(docker inspect -f '{{.HostConfig.ReadonlyRootfs}}' "$cid")" = true ] || fail "the service container's root is not read-only"
uid=$(timeout 30 "${COMPOSE[@]}" exec -T vae id -u)
[ "$uid" != 0 ] || fail "the service runs as root"
pid1=$(timeout 30 "${COMPOSE[@]}" exec -T vae cat /proc/1/cmdline | tr '\0' ' ')
[ "$pid1" = "/opt/venv/bin/python -m service " ] || fail "PID 1 is '$pid1', not the server"
timeout 30 "${COMPOSE[@]}" exec -T vae sh -c 'echo x > /tmp/probe && rm /tmp/probe' || fail "/tmp is not writable"

# --- requests through the container -------------------------------------------------------------------
call() {  # METHOD PATH [JSON]: the body on stdout; fails unless the answer is 200
  local status
  if [ $# -ge 3 ]; then
    status=$(curl -sS --max-time 60 -o "$WORK/body" -w '%{http_code}' -X "$1" "$URL$2" \
      -H 'content-type: application/json' -d "$3") || fail "$1 $2: no answer"
  else
    status=$(curl -sS --max-time 60 -o "$WORK/body" -w '%{http_code}' -X "$1" "$URL$2") || fail "$1 $2: no answer"
  fi
  [ "$status" = 200 ] || fail "$1 $2 answered $status: $(head -c 500 "$WORK/body")"
  cat "$WORK/body"
}
check() {  # JSON PYTHON-EXPRESSION-OVER-r MESSAGE
  python3 -c 'import json, math, sys; r = json.loads(sys.argv[1]); sys.exit(0 if eval(sys.argv[2]) else 1)' "$1" "$2" \
    || fail "$3: $(echo "$1" | head -c 500)"
}
redis_keys() {
  timeout 30 "${COMPOSE[@]}" exec -T redis redis-cli -p "$E2E_REDIS_PORT" --scan --pattern 'vae:*' | wc -l
}

start=$(now)
ready=$(call GET /health/ready)
check "$ready" 'r["status"] == "ready" and r["cache"]["backend"] == "redis" and r["cache"]["state"] == "ok"' \
  "/health/ready does not say ready with the compose Redis"
check "$ready" 'r["provider"] == "CPUExecutionProvider"' "the CPU override does not serve on the CPU"
POINT="0,0,1,1,1,1,0,0,0,1,1,0,0,1,1,0,0,1,0,0,0,0,1,0,0,1,0,0,0,0,1,0,0,1,0,0,0,0,1,0,0,1,0,0,0,0,1,0,0,1,1,0,0,1,1,0,0,0,1,1,1,1,0,0"
keys_start=$(redis_keys)
encoded=$(call POST /encode "{\"model\": \"digits-binary\", \"x\": [[$POINT]], \"samples\": 2, \"seed\": 7}")
check "$encoded" 'r["model"] == "digits-binary:1" and len(r["mu"]) == 1 and len(r["mu"][0]) == 16 and len(r["z"][0]) == 2' \
  "POST /encode"
sampled=$(call POST /sample '{"model": "digits", "n": 3, "seed": 1}')
check "$sampled" 'r["model"] == "digits:1" and len(r["x"]) == 3 and len(r["x"][0]) == 64 and len(r["z"]) == 3' "POST /sample"
# k = 300: over VAE_CACHE_MIN_WORK (256 rows), so this answer is cached (the single-point /encode is not)
scored=$(call POST /loglik "{\"model\": \"digits-binary\", \"x\": [[$POINT]], \"k\": 300, \"seed\": 7}")
check "$scored" 'r["model"] == "digits-binary:1" and r["k"] == 300 and len(r["loglik"]) == 1' "POST /loglik"
keys_before=$(redis_keys)
first=$(call GET "/loglik?model=digits-binary&k=500&seed=3&x=$POINT")
keys_after=$(redis_keys)
second=$(call GET "/loglik?model=digits-binary&k=500&seed=3&x=$POINT")
keys_again=$(redis_keys)
check "$first" 'r["model"] == "digits-binary:1" and math.isfinite(r["loglik"]) and r["loglik"] < 0' "GET /loglik"
[ "$first" = "$second" ] || fail "GET /loglik twice gave different answers: $first / $second"
[ "$keys_before" -gt "$keys_start" ] || fail "POST /loglik with k = 300 left no vae:* key in the compose Redis"
[ "$keys_after" -eq $((keys_before + 1)) ] || fail "GET /loglik left $((keys_after - keys_before)) new vae:* keys in the compose Redis, not 1"
[ "$keys_again" -eq "$keys_after" ] || fail "the second GET /loglik was not answered from the compose Redis"
phase_done "requests" "$(since "$start")"
log "vae:* keys in the compose Redis: $keys_start at the start, $keys_before after /encode, /sample and POST /loglik, $keys_after after /loglik, $keys_again after it again"

# --- stop: SIGTERM to PID 1, drained, exit code 0 -------------------------------------------------------
start=$(now)
timeout 120 "${COMPOSE[@]}" stop vae >/dev/null 2>&1 || fail "docker compose stop vae"
STOP_S=$(since "$start")
phase_done "stop" "$STOP_S"
exit_code=$(docker inspect -f '{{.State.ExitCode}}' "$cid")
[ "$exit_code" = 0 ] || fail "the server exited with code $exit_code after docker compose stop (SIGTERM), not 0"
docker logs "$cid" 2>&1 | grep -q "Finished server process" || fail "the server's log does not show a clean shutdown"
timeout 120 "${COMPOSE[@]}" down --volumes --remove-orphans --timeout 5 >/dev/null 2>&1 || fail "docker compose down"
STACK_UP=false

# --- a code change rebuilds the code, not the dependencies ---------------------------------------------
mkdir "$WORK/context"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -c | tar -x -C "$WORK/context"
echo "# e2e: a code change, $(date +%s.%N) $RANDOM (new each run: an old one would come from the cache)" >> "$WORK/context/service/__init__.py"
start=$(now)
timeout 600 docker buildx build --network host --progress plain -t "$REBUILD_TAG" "$WORK/context" \
  > "$WORK/rebuild.log" 2>&1 || { tail -30 "$WORK/rebuild.log" >&2; fail "the rebuild after a code change"; }
REBUILD_S=$(since "$start")
step_state() {  # the build log's verdict on the step whose command contains $1: CACHED or DONE
  local id
  id=$(grep -F "$1" "$WORK/rebuild.log" | sed -n 's/^\(#[0-9]*\) \[.*/\1/p' | head -1)
  [ -n "$id" ] || fail "no step '$1' in the rebuild's log"
  grep -E "^$id (CACHED|DONE)" "$WORK/rebuild.log" | head -1 | cut -d' ' -f2
}
[ "$(step_state 'pip install -r')" = CACHED ] || fail "a code change re-ran the dependency layer (pip install -r)"
[ "$(step_state 'COPY service')" = DONE ] || fail "the rebuild did not see the code change"
phase_done "rebuild after a change under service/ (dependency layer cached)" "$REBUILD_S"

echo
echo "e2e: passed. Image $IMAGE: $IMAGE_MB MB; build $BUILD_S s$([ "$RECORD" = true ] && echo ' (cold)'); rebuild after a code change $REBUILD_S s."
printf '  %s\n' "${PHASES[@]}"

# --- --record: the figures into docs/RELIABILITY.md ------------------------------------------------------
if [ "$RECORD" = true ]; then
  server=$(docker version -f '{{.Server.Version}}')
  layer_mb() {  # the size of the image's layer made by the step whose command contains $1, in MB
    docker history --no-trunc --human=false --format '{{.Size}} {{.CreatedBy}}' "$IMAGE" \
      | grep -F -- "$1" | head -1 | awk '{print int($1 / 1000000)}'
  }
  base_mb=$(( $(docker image inspect -f '{{.Size}}' "$(echo "$bases" | head -1)") / 1000000 ))
  compose_version=$(docker compose version --short)
  section=$(cat <<EOF
## Docker

\`docker compose up\` serves on the GPU (\`VAE_DEVICE=cuda\`: the service refuses to start without a GPU
ONNX Runtime can use); \`docker compose -f docker-compose.yml -f docker-compose.cpu.yml up\` on the CPU. The
image is an NVIDIA CUDA 13.0 + cuDNN 9 runtime (Ubuntu 24.04) with \`onnxruntime-gpu==1.31.1\` (the release
built for that CUDA; the host needs an NVIDIA driver >= 580); by default it has no torch (the lean image, also the
CPU build's); build arg VAE_GPU_EXTRA=1 adds torch and triton for the kernel tier. It runs \`python -m service\` as
PID 1, as the user \`vae\`, with a read-only root (tmpfs on /tmp); \`docker compose stop\` sends SIGTERM
and the server drains and exits 0 (\`stop_grace_period\` 30 s). CI runs \`bash deploy/e2e.sh\` after
\`make test\`: it builds the image, brings the stack up with the CPU override, calls POST /encode, POST /sample, POST /loglik
and GET /loglik (twice, identical) through the container, checks the keys in the compose Redis, stops the
stack, checks exit code 0, then rebuilds after a change under service/ and checks the dependency layer
came from the cache.

Measured with \`bash deploy/e2e.sh --record\` on $(date -u +%Y-%m-%d), $(uname -m), $(nproc) cores, Docker
engine $server, Compose $compose_version. No registry is reachable there: the base image is a Debian bookworm
stand-in (Python 3.11, no CUDA, $base_mb MB) tagged with the CUDA image's name: the size below is that
stand-in plus the image's own layers (system Python $(layer_mb 'apt-get install') MB, the dependencies $(layer_mb 'pip install -r') MB, of which
onnxruntime-gpu with its CUDA provider is most); on the real base, add NVIDIA's CUDA and cuDNN runtime
image instead of the stand-in (not measurable here).

| measure | figure |
|---|---|
| cold build (\`--no-cache\`: apt, pip install of the dependencies, code) | $BUILD_S s |
| rebuild after a change under \`service/\` (dependency layer cached) | $REBUILD_S s |
| image size (on the stand-in base) | $IMAGE_MB MB |
| \`docker compose up\` until healthy | $UP_S s |
| \`docker compose stop\` (SIGTERM, drain, exit 0) | $STOP_S s |
EOF
)
  [ -x .venv/bin/python ] || fail "--record needs .venv (make install)"
  printf '%s\n' "$section" | .venv/bin/python -c 'import sys; from pathlib import Path; from bench.report import replace_section; replace_section("compose", sys.stdin.read(), Path("docs/RELIABILITY.md"))'
  log "wrote the compose section of docs/RELIABILITY.md"
fi
