"""``python -m harness.history add | check | report``."""

import sys

from harness.history.cli import history_main

sys.exit(history_main())
