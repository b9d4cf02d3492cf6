"""Entry of a cell's own process: ``python -m harness.worker RUN_DIR`` with the cell JSON on stdin."""

import sys

from harness.cell import main

sys.exit(main())
