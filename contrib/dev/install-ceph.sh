#!/usr/bin/env bash
# Installs a single-node Ceph with radosgw from Debian's packages, for contrib/dev/start-ceph.sh (the S3
# and RGW storage plugins' tests run against it), and nginx for the scale-out test (several registry
# processes on one bucket behind contrib/nginx/registry-cluster.conf). Idempotent and quick to rerun: apt runs only when a
# package is missing.
set -euo pipefail

APT_PACKAGES=(ceph-mon ceph-osd radosgw ceph-common curl nginx-light)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-ceph: apt-get install ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-ceph: Debian packages already installed"
fi
echo "install-ceph: $(ceph --version | cut -d' ' -f1-3); $(nginx -v 2>&1)"
