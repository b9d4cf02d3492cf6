#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries (initdb, pg_ctl, postgres) for the history tests,
# which start their own throw-away server. Idempotent and quiet: exits 0 at once when the
# binaries are on PATH or under /usr/lib/postgresql/*/bin. When they cannot be installed it says
# why and exits 0 (the PostgreSQL test then skips), or 1 when CI=true (there it must run).
# SEGBENCH_PG_BIN_GLOB (default /usr/lib/postgresql/*/bin) is where Debian puts the server binaries.
set -u
found() {
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  for d in ${SEGBENCH_PG_BIN_GLOB:-/usr/lib/postgresql/*/bin}; do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && return 0
  done
  return 1
}
found && exit 0
give_up() {
  echo "install-postgres: $1; the PostgreSQL history test will skip" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 0
}
command -v apt-get >/dev/null 2>&1 || give_up "PostgreSQL binaries missing and apt-get is not available"
SUDO=""
if [ "$(id -u)" != "0" ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    give_up "PostgreSQL binaries missing; as root run: apt-get install postgresql"
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null 2>&1 || true
$SUDO apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 \
  || give_up "'apt-get install postgresql' failed"
found || give_up "initdb/pg_ctl still not found after apt-get install postgresql"
