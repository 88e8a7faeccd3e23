#!/usr/bin/env bash
# Stops the cluster contrib/dev/start-ceph.sh started in $CEPH_DIR, by the PIDs in its pid files.
#   stop-ceph.sh          graceful: TERM radosgw, then the OSD, then the monitor, one after the other
#                         (TERMing radosgw and the OSD together makes radosgw wait ~2 min for the OSD);
#                         KILL one that takes more than 10 s
#   stop-ceph.sh --kill   KILL all three (instant; fine for a throwaway cluster)
#   --wipe                also delete $CEPH_DIR
#   --only-rgw            stop radosgw alone (the cluster stays; start-rgw.sh brings it back)
D="${CEPH_DIR:-${TMPDIR:-/tmp}/registry-ceph}"
sig=TERM daemons="client.rgw.a osd.0 mon.a" wipe=""
for a in "$@"; do
  case "$a" in
    --kill) sig=KILL ;;
    --wipe) wipe=1 ;;
    --only-rgw) daemons="client.rgw.a" ;;
  esac
done
alive() { [ -e "/proc/$1" ] && ! grep -q '^[^)]*) Z' "/proc/$1/stat" 2>/dev/null; }  # zombies count as gone
for n in $daemons; do
  f="$D/run/$n.pid"
  [ -f "$f" ] || continue
  pid=$(cat "$f")
  kill -s "$sig" "$pid" 2>/dev/null || { rm -f "$f"; continue; }
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  alive "$pid" && kill -9 "$pid" 2>/dev/null
  rm -f "$f"
done
[ -n "$wipe" ] && rm -rf "$D"
exit 0
