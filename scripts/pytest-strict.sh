#!/usr/bin/env bash
# Run pytest and treat "no tests ran" (exit code 5) as a failure.
set -u
py="$1"; shift
"$py" -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: failing on purpose" >&2
  exit 1
fi
exit "$rc"
