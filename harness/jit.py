"""Optional compiled loops: whether numba is installed.

numba comes with the ``kernels`` extra (also pulled by ``depth``). Modules that hold numba loops
import numba at their top and are themselves imported only on first use, so the measuring path
pays numba's import (about 0.2 s) only where a compiled loop runs; without numba every caller has
an exact torch or numpy path.
"""

from __future__ import annotations

import importlib.util
from functools import cache


@cache
def available() -> bool:
    """Whether numba is installed (compiled loops can run)."""
    return importlib.util.find_spec("numba") is not None
