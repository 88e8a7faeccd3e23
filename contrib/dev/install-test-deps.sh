#!/usr/bin/env bash
# Installs what tests/clients and tests/interop drive, on Debian 12 (CI runs it as root on a fresh machine):
#   - Debian packages: the real registry clients (skopeo, podman, buildah and what they need to run
#     without a daemon), busybox-static for the test image, Debian's docker-registry (Distribution 2.8.2,
#     the reference the interop tests share a storage root with), wrk for load tests;
#   - npm: @sigstore/oci into tests/clients/js/node_modules, from its package-lock.json.
# Python test dependencies (oras, python-dxf, requests) come from pyproject's [test] extra via `make install`.
#
# Idempotent and quick to rerun: apt runs only when a package is missing (dpkg-query), npm only when the
# lock file changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../.."

APT_PACKAGES=(
  skopeo podman buildah busybox-static crun conmon netavark aardvark-dns catatonit uidmap fuse-overlayfs
  golang-github-containers-common docker-registry wrk
  systemd python3-venv  # systemd-analyze verify (contrib/systemd); a Python for the container test's base image
  chromium chromium-driver  # registry_plugins/ui: the browser tests (Selenium drives Debian's chromium)
)
JS_DIR=tests/clients/js

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
# Node.js: the machines ship one (with npm); Debian's is the fallback where none is on PATH.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  missing+=(nodejs npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-test-deps: apt-get install ${missing[*]}"
  as_root apt-get update -q
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "install-test-deps: Debian packages already installed"
fi

# npm ci wipes and reinstalls node_modules; skip it when the lock file is the one last installed.
stamp="$JS_DIR/node_modules/.installed-lock.sha256"
want=$(sha256sum "$JS_DIR/package-lock.json" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -f "$JS_DIR/node_modules/@sigstore/oci/package.json" ]; then
  echo "install-test-deps: $JS_DIR/node_modules up to date"
else
  echo "install-test-deps: npm ci in $JS_DIR"
  # @sigstore/oci 0.7.2 declares node >= 22 but works on 20 (shared/notes/clients.md): engine warnings only.
  (cd "$JS_DIR" && npm ci --no-audit --no-fund --loglevel=error)
  echo "$want" >"$stamp"
fi

bash contrib/dev/install-azurite.sh  # Azurite for registry_plugins/azure (its own script)
bash contrib/dev/install-ceph.sh  # single-node Ceph RGW for the s3 and rgw storage plugins' tests

echo "install-test-deps: $(skopeo --version); $(podman --version); $(buildah --version | cut -d' ' -f1-3);" \
  "$(docker-registry --version | cut -d' ' -f2-); node $(node --version)"
