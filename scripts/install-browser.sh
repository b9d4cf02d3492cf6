#!/usr/bin/env bash
# Install Debian's headless Chromium and ChromeDriver for the browser tests (idempotent).
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "install-browser: chromium/chromedriver missing and apt-get not usable here; browser tests will skip" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || true
if ! apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; then
  echo "install-browser: apt-get install chromium chromium-driver failed" >&2
  exit 1
fi
