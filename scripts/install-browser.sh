#!/usr/bin/env bash
# Install Debian's headless Chromium and ChromeDriver for the browser tests.
# Idempotent and quiet: exits 0 at once when both are already on PATH. When they cannot be
# installed it says why and exits 0 (the browser tests then skip), or 1 when CI=true (there the
# browser tests must run).
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
give_up() {
  echo "install-browser: $1; browser tests will skip" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 0
}
command -v apt-get >/dev/null 2>&1 || give_up "chromium/chromedriver missing and apt-get is not available"
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    give_up "chromium/chromedriver missing; as root run: apt-get install chromium chromium-driver"
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || true
$SUDO apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 \
  || give_up "'apt-get install chromium chromium-driver' failed"
command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1 \
  || give_up "chromium or chromedriver still not on PATH after apt-get install"
