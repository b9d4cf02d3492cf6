"""Regenerate harness/schema/suite.schema.json from the suite format's declarations
(harness/suite_spec.py). A test fails while the shipped file differs from what this writes.
Run from the repository root:

    .venv/bin/python scripts/make_suite_schema.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.suite_schema import SCHEMA_PATH, schema_text  # noqa: E402


def main() -> int:
    SCHEMA_PATH.parent.mkdir(parents=True, exist_ok=True)
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH.relative_to(Path.cwd()) if SCHEMA_PATH.is_relative_to(Path.cwd()) else SCHEMA_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
