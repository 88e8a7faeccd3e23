#!/usr/bin/env bash
# Starts a throwaway single-node Ceph cluster (1 mon, 1 OSD, no mgr) with radosgw (beast) on loopback,
# for developing and testing the registry's s3 and rgw storage drivers. Install it first with
# contrib/dev/install-ceph.sh (Debian's ceph-mon ceph-osd radosgw ceph-common).
#
# Everything lives under $CEPH_DIR: no systemd, no /etc/ceph, no cephx (auth none). Each run wipes
# $CEPH_DIR and builds a fresh cluster in about 2 seconds. Stop it with contrib/dev/stop-ceph.sh.
# Prints KEY=VALUE lines (endpoint, credentials); load them with: set -a; eval "$(start-ceph.sh)"; set +a
#
# Environment: CEPH_DIR (default ${TMPDIR:-/tmp}/registry-ceph), RGW_PORT (7480), MON_V2_PORT (3300),
# MON_V1_PORT (6789), OSD_STORE=memstore|bluestore (memstore), MEMSTORE_BYTES (4 GiB),
# ACCESS_KEY / SECRET_KEY of the S3 user created (testaccesskey / testsecretkey).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
D="${CEPH_DIR:-${TMPDIR:-/tmp}/registry-ceph}"
RGW_PORT="${RGW_PORT:-7480}"
MON_V2_PORT="${MON_V2_PORT:-3300}"
MON_V1_PORT="${MON_V1_PORT:-6789}"
OSD_STORE="${OSD_STORE:-memstore}"
MEMSTORE_BYTES="${MEMSTORE_BYTES:-4294967296}"
ACCESS_KEY="${ACCESS_KEY:-testaccesskey}"
SECRET_KEY="${SECRET_KEY:-testsecretkey}"

t0=$(date +%s%N)
ms() { echo $(( ($(date +%s%N) - t0) / 1000000 )); }
fail() { echo "start-ceph: $*; logs in $D/log" >&2; CEPH_DIR="$D" "$HERE/stop-ceph.sh" --kill; exit 1; }
if compgen -G "$D/run/*.pid" >/dev/null; then CEPH_DIR="$D" "$HERE/stop-ceph.sh"; fi
rm -rf "$D"
mkdir -p "$D"/{mon,osd,rgw,log,run,crash}
FSID=$(cat /proc/sys/kernel/random/uuid)
CONF="$D/ceph.conf"
export CEPH_CONF="$CONF"

cat > "$CONF" <<CONF
[global]
fsid = $FSID
mon initial members = a
mon host = [v2:127.0.0.1:$MON_V2_PORT,v1:127.0.0.1:$MON_V1_PORT]
public network = 127.0.0.0/8
auth cluster required = none
auth service required = none
auth client required = none
auth supported = none
run dir = $D/run
pid file = $D/run/\$name.pid
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
crash dir = $D/crash
log to stderr = false
err to stderr = true
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon max pg per osd = 1000
ms bind ipv6 = false
# Commit map changes every 50 ms instead of every second: start-up takes ~2 s instead of ~14 s, and
# the first bucket and put ~150 ms instead of ~2 s.
paxos propose interval = 0.05
paxos min wait = 0.01

[mon]
mon data = $D/mon/\$cluster-\$id
mon data avail warn = 1
mon data avail crit = 0

[osd]
osd data = $D/osd/\$cluster-\$id
osd objectstore = $OSD_STORE
memstore device bytes = $MEMSTORE_BYTES
bluestore block path = $D/osd/block-\$id
bluestore block create = true
bluestore block size = 21474836480
bluestore fsck on mount = false
osd memory target = 1073741824
bluestore cache autotune = false
bluestore cache size = 268435456

[client]
log file = $D/log/\$name.log

[client.rgw.a]
# radosgw (Pacific) forces auth_client_required=cephx and ms_mon_client_mode=secure as built-in
# defaults; with auth none they must be overridden here or it hangs at start
# ("get_initial_auth_request returned -13").
auth client required = none
ms mon client mode = crc
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT tcp_nodelay=1
rgw data = $D/rgw
rgw thread pool size = 64
rgw enable usage log = false
CONF

# Commands the (absent) mgr would serve hang forever: every ceph command runs under timeout.
ceph_() { timeout 20 ceph -c "$CONF" --connect-timeout 5 "$@"; }

monmaptool --create --clobber --fsid "$FSID" \
  --addv a "[v2:127.0.0.1:$MON_V2_PORT,v1:127.0.0.1:$MON_V1_PORT]" "$D/monmap" >/dev/null
ceph-authtool --create-keyring "$D/mon.keyring" --gen-key -n mon. --cap mon 'allow *' >/dev/null
ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap" --keyring "$D/mon.keyring"
ceph-mon -c "$CONF" -i a </dev/null >>"$D/log/daemons.out" 2>&1 || fail "ceph-mon did not start"
for _ in $(seq 1 100); do ceph_ mon stat >/dev/null 2>&1 && break; sleep 0.2; done
ceph_ mon stat >/dev/null || fail "the monitor does not answer"

OSD_UUID=$(cat /proc/sys/kernel/random/uuid)
OSD_ID=$(ceph_ osd new "$OSD_UUID")
mkdir -p "$D/osd/ceph-$OSD_ID"
ceph-osd -c "$CONF" -i "$OSD_ID" --mkfs --osd-uuid "$OSD_UUID" >"$D/log/osd-mkfs.log" 2>&1 || fail "OSD mkfs failed"
ceph-osd -c "$CONF" -i "$OSD_ID" </dev/null >>"$D/log/daemons.out" 2>&1 || fail "ceph-osd did not start"
for _ in $(seq 1 150); do
  ceph_ osd dump 2>/dev/null | grep -q "^osd.$OSD_ID up" && break; sleep 0.2
done
ceph_ osd dump | grep -q "^osd.$OSD_ID up" || fail "the OSD did not come up"

radosgw -c "$CONF" -n client.rgw.a </dev/null >>"$D/log/daemons.out" 2>&1 || fail "radosgw did not start"
for _ in $(seq 1 300); do
  curl -s -o /dev/null "http://127.0.0.1:$RGW_PORT/" && break; sleep 0.2
done
curl -sf -o /dev/null "http://127.0.0.1:$RGW_PORT/" || fail "radosgw does not answer"

timeout 60 radosgw-admin -c "$CONF" user create --uid=test --display-name="Test User" \
  --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" >"$D/user.json" || fail "radosgw-admin user create failed"

cat <<OUT
# Ceph RGW $(ceph -c "$CONF" --version | awk '{print $3}') ($OSD_STORE OSD) ready in $(ms) ms; pids $(cat "$D"/run/*.pid | tr '\n' ' ')
RGW_S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
RGW_ACCESS_KEY_ID=$ACCESS_KEY
RGW_SECRET_ACCESS_KEY=$SECRET_KEY
RGW_REGION=us-east-1
RGW_ZONEGROUP=default
CEPH_CONF=$CONF
CEPH_DIR=$D
# CreateBucket accepts no LocationConstraint but the zonegroup ("default"); any region signs.
# stop: CEPH_DIR=$D $HERE/stop-ceph.sh [--kill] [--wipe]
OUT
