#!/usr/bin/env bash
# Stops the moto server contrib/dev/start-moto.sh started (by its pid file in $MOTO_DIR).
D="${MOTO_DIR:-${TMPDIR:-/tmp}/registry-moto}"
[ -f "$D/moto.pid" ] || exit 0
pid=$(cat "$D/moto.pid")
kill "$pid" 2>/dev/null
alive() { [ -e "/proc/$1" ] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }
for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
alive "$pid" && kill -9 "$pid" 2>/dev/null
rm -f "$D/moto.pid"
exit 0
