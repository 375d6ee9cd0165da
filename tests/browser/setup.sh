#!/usr/bin/env bash
# Installs what the browser tests of `casepool report` need: Debian's headless Chromium, and a
# Latin font for the English pages (the Arabic-script font is embedded in the report itself).
# Called by .ci/run before the tests; safe to run again (apt-get skips what is installed).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends chromium fonts-dejavu-core
