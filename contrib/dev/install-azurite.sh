#!/usr/bin/env bash
# Installs Azurite (the Azure Storage emulator) into contrib/dev/azurite/node_modules from its
# package-lock.json (azurite 3.35.0: later releases need Node >= 22). The azure storage driver's tests
# start it through contrib/dev/start-azurite.sh.
#
# Idempotent and quick to rerun: npm runs only when the lock file changed since the last install.
# Needs node and npm on PATH (contrib/dev/install-test-deps.sh makes sure of that before calling this).
set -euo pipefail
cd "$(dirname "$0")/azurite"

stamp=node_modules/.installed-lock.sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x node_modules/.bin/azurite-blob ]; then
  echo "install-azurite: contrib/dev/azurite/node_modules up to date"
else
  echo "install-azurite: npm ci in contrib/dev/azurite"
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$stamp"
fi
echo "install-azurite: azurite $(node_modules/.bin/azurite-blob --version 2>/dev/null | tail -1)"
