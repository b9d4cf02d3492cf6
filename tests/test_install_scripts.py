"""scripts/install-postgres.sh and scripts/install-history.sh: quiet and idempotent when everything is
there, and (PostgreSQL) giving up with a reason, exit 0 outside CI and 1 under CI=true."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_postgres_script_is_quiet_when_the_binaries_are_there():
    import pg_util

    script = ROOT / "scripts" / "install-postgres.sh"
    assert os.access(script, os.X_OK)
    if pg_util.find_bin() is None:
        pytest.skip("PostgreSQL is not installed here; the script would install it")
    out = subprocess.run([str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""


def test_postgres_script_gives_up_quietly_except_under_ci(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("bash is not installed")
    script = str(ROOT / "scripts" / "install-postgres.sh")
    env = {"PATH": str(tmp_path), "SEGBENCH_PG_BIN_GLOB": str(tmp_path / "none" / "*")}  # no binaries, no apt-get
    out = subprocess.run([bash, script], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0 and "PostgreSQL history test will skip" in out.stderr
    out = subprocess.run([bash, script], capture_output=True, text=True, env={**env, "CI": "true"}, timeout=60)
    assert out.returncode == 1 and "apt-get is not available" in out.stderr


def test_history_script_is_quiet_when_everything_imports():
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    pytest.importorskip("signal_processing_algorithms")
    script = ROOT / "scripts" / "install-history.sh"
    assert os.access(script, os.X_OK)
    out = subprocess.run(["bash", str(script), sys.executable], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == ""


def test_missing_postgres_skips_but_fails_under_ci(monkeypatch):
    import pg_util

    monkeypatch.setattr(pg_util, "find_bin", lambda: None)
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="install-postgres.sh"):
        with pg_util.postgres_server():
            pass
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        with pg_util.postgres_server():
            pass
