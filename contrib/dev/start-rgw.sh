#!/usr/bin/env bash
# Starts radosgw again in a cluster of contrib/dev/start-ceph.sh whose radosgw was stopped
# (stop-ceph.sh --only-rgw): the monitor, the OSD and the data stay as they were.
set -euo pipefail
D="${CEPH_DIR:-${TMPDIR:-/tmp}/registry-ceph}"
CONF="$D/ceph.conf"
PORT=$(sed -n 's/^rgw frontends = beast endpoint=127.0.0.1:\([0-9]*\).*/\1/p' "$CONF")
radosgw -c "$CONF" -n client.rgw.a </dev/null >>"$D/log/daemons.out" 2>&1
for _ in $(seq 1 300); do
  curl -s -o /dev/null "http://127.0.0.1:$PORT/" && exit 0; sleep 0.1
done
echo "start-rgw: radosgw does not answer on $PORT; see $D/log" >&2
exit 1
