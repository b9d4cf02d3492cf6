"""Run history: record runs in a database (SQLite or PostgreSQL), find steps per series, chart them.

- :mod:`harness.history.quantities`: ``cell_quantities(cell)`` and each quantity's unit/direction;
- :mod:`harness.history.store`: the SQLAlchemy tables and :class:`~harness.history.store.HistoryStore`;
- :mod:`harness.history.changepoints`: E-divisive means change points (Hunter's split + merge);
- :mod:`harness.history.check`: steps per series with commit range, magnitude, p-value; exit codes;
- :mod:`harness.history.report`: the offline plotly page;
- :mod:`harness.history.cli`: ``history_main(argv)`` (``python -m harness.history``).

Nothing here is imported on the measuring path; SQLAlchemy, the E-divisive package and plotly
are imported by the modules that need them.
"""

from harness.history.cli import history_main

__all__ = ["history_main"]
