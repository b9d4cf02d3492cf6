"""A throw-away PostgreSQL server for tests: initdb + pg_ctl in a temporary folder on a free port.

The binaries come from PATH or Debian's /usr/lib/postgresql/*/bin (scripts/install-postgres.sh
installs them). PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` user (created by Debian's package) through ``runuser``. Missing pieces skip the
test with the reason, except when CI is "true": there they fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

INSTALL_HINT = "scripts/install-postgres.sh installs them"


def unavailable(reason: str) -> None:
    """Skip with ``reason``, or fail when CI is "true"."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the PostgreSQL test must run)")
    pytest.skip(reason)


def find_bin() -> Path | None:
    """The folder holding initdb and pg_ctl, or None."""
    on_path = shutil.which("initdb")
    candidates = ([Path(on_path).resolve().parent] if on_path else []) + [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)]
    for d in candidates:
        if (d / "initdb").exists() and (d / "pg_ctl").exists():
            return d
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user() -> list[str]:
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        unavailable("running as root and runuser is missing: PostgreSQL cannot run as root")
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        unavailable("running as root and there is no 'postgres' user to run the server as")
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def postgres_server() -> Iterator[str]:
    """Start a server; yield its SQLAlchemy URL (database ``postgres``, user ``segbench``); stop it."""
    bindir = find_bin()
    if bindir is None:
        unavailable(f"PostgreSQL's initdb and pg_ctl are not installed ({INSTALL_HINT})")
    prefix = _as_server_user()
    root = Path(tempfile.mkdtemp(prefix="segbench-pg-"))  # under /tmp: the server user can reach it
    data = root / "data"
    if prefix:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    run = lambda *cmd: subprocess.run([*prefix, *cmd], capture_output=True, text=True, timeout=120)  # noqa: E731
    try:
        out = run(str(bindir / "initdb"), "-D", str(data), "-U", "segbench", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        if out.returncode != 0:
            unavailable(f"initdb failed: {out.stderr.strip()[-400:]}")
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={root} -c fsync=off"
        out = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-o", opts, "-w", "-t", "60",
                  "start")
        if out.returncode != 0:
            log = (root / "log").read_text(errors="replace")[-400:] if (root / "log").exists() else ""
            unavailable(f"pg_ctl start failed: {out.stderr.strip()[-300:]} {log}")
        try:
            yield f"postgresql://segbench@127.0.0.1:{port}/postgres"
        finally:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
    finally:
        shutil.rmtree(root, ignore_errors=True)
