#!/usr/bin/env bash
# Runs Azurite's blob service (the Azure Storage emulator) in the foreground, on loopback, until it is
# sent SIGTERM or SIGINT. Install it first with contrib/dev/install-azurite.sh.
#
#   contrib/dev/start-azurite.sh                         # 127.0.0.1:10000, data in memory
#   AZURITE_PORT=10001 AZURITE_LOCATION=/srv/azurite contrib/dev/start-azurite.sh   # data on disk
#
# Env knobs: AZURITE_PORT (10000), AZURITE_HOST (127.0.0.1), AZURITE_LOCATION (a directory to keep the
# data in, surviving restarts; unset: in memory, gone when it stops), AZURITE_MEM_MB (the in-memory
# data limit, 4096), AZURITE_BIN (the azurite-blob executable; default: the one install-azurite.sh
# installed next to this script). Azurite writes its workspace files in the current directory.
#
# Account devstoreaccount1, with Azurite's well-known development key; the service URL is
# http://HOST:PORT/devstoreaccount1 (path-style: the account is in the path).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BIN="${AZURITE_BIN:-$HERE/azurite/node_modules/.bin/azurite-blob}"
HOST="${AZURITE_HOST:-127.0.0.1}"
PORT="${AZURITE_PORT:-10000}"
if [ ! -x "$BIN" ]; then
  echo "start-azurite: $BIN not found; run contrib/dev/install-azurite.sh" >&2
  exit 127
fi
if [ -n "${AZURITE_LOCATION:-}" ]; then
  mkdir -p "$AZURITE_LOCATION"
  store=(--location "$AZURITE_LOCATION")
else
  store=(--inMemoryPersistence --extentMemoryLimit "${AZURITE_MEM_MB:-4096}")  # not combinable with --location
fi
# --disableTelemetry: 3.35 otherwise reports to a telemetry host on the internet.
# --skipApiVersionCheck: current azure-storage-blob SDKs send API versions 3.35 does not know yet.
# --loose: ignore headers it does not implement instead of failing the request.
exec "$BIN" --blobHost "$HOST" --blobPort "$PORT" "${store[@]}" \
  --disableTelemetry --skipApiVersionCheck --loose --silent
