"""``python -m harness`` runs the segbench command line."""

import sys

from harness.cli import main

sys.exit(main())
