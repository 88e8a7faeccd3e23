#!/usr/bin/env bash
# Starts moto's S3 server (a mock of AWS, second S3 implementation for the s3 driver's tests) on
# 127.0.0.1:$MOTO_PORT in the background. moto[server] comes with the registry's [test] extra
# (`make install`). Prints KEY=VALUE lines (endpoint, credentials). Stop with contrib/dev/stop-moto.sh.
#
# Environment: MOTO_PORT (5310), MOTO_DIR (pid and log; default ${TMPDIR:-/tmp}/registry-moto),
# MOTO_SERVER (the moto_server executable; default: next to this shell's python3, else on PATH).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PORT="${MOTO_PORT:-5310}"
D="${MOTO_DIR:-${TMPDIR:-/tmp}/registry-moto}"
SERVER="${MOTO_SERVER:-$(command -v moto_server || true)}"
[ -n "$SERVER" ] || { echo "start-moto: moto_server not found (pip install 'moto[server]')" >&2; exit 1; }
mkdir -p "$D"
t0=$(date +%s%N)
if [ -f "$D/moto.pid" ] && kill -0 "$(cat "$D/moto.pid")" 2>/dev/null; then
  echo "start-moto: already running (pid $(cat "$D/moto.pid"))" >&2; exit 1
fi
# setsid: its own session, so it outlives the calling shell; every fd redirected so that
# $(start-moto.sh) returns at once.
setsid "$SERVER" -H 127.0.0.1 -p "$PORT" </dev/null >"$D/moto.log" 2>&1 &
echo $! >"$D/moto.pid"
for _ in $(seq 1 300); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/moto-api/" && break
  kill -0 "$(cat "$D/moto.pid")" 2>/dev/null || { echo "start-moto: moto died; see $D/moto.log" >&2; exit 1; }
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/moto-api/" || {
  echo "start-moto: moto does not answer; see $D/moto.log" >&2; MOTO_DIR="$D" "$HERE/stop-moto.sh"; exit 1; }
cat <<OUT
# moto server ready in $(( ($(date +%s%N) - t0) / 1000000 )) ms; pid $(cat "$D/moto.pid")
MOTO_S3_ENDPOINT=http://127.0.0.1:$PORT
MOTO_ACCESS_KEY_ID=testing
MOTO_SECRET_ACCESS_KEY=testing
MOTO_REGION=us-east-1
# any key and secret are accepted; wipe all state: curl -X POST http://127.0.0.1:$PORT/moto-api/reset
# stop: MOTO_DIR=$D $HERE/stop-moto.sh
OUT
