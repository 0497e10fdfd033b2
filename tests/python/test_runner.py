"""run_pytest.py: skipped (77) without grpcio; a failure when grpcio is there and nothing ran."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def runner(*args, env=None):
    command = [sys.executable, str(HERE / "run_pytest.py"), "--bin-dir",
               os.environ.get("STIMLOOP_BIN_DIR", "."), "--python-path",
               os.environ.get("STIMLOOP_PYTHON_PATH", "."), *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def test_skipped_without_grpcio(tmp_path):
    # A `grpc` module that cannot be imported, first on the path: as on a machine without it.
    (tmp_path / "grpc.py").write_text("raise ImportError('no grpcio here')\n")
    done = runner(env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert done.returncode == 77, done.stdout + done.stderr
    assert "SKIPPED" in done.stdout and "python3-grpcio" in done.stdout


def test_fails_with_grpcio_but_without_numpy(tmp_path):
    (tmp_path / "numpy.py").write_text("raise ImportError('no numpy here')\n")
    done = runner(env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "python3-numpy" in done.stdout


def test_fails_when_no_test_ran():
    done = runner("-k", "no_test_has_this_name")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no Python test ran" in done.stdout


def test_fails_when_every_test_skipped(tmp_path):
    (tmp_path / "test_skips.py").write_text(
        "import pytest\n\ndef test_skipped():\n    pytest.skip('cannot run')\n")
    done = runner("--tests", str(tmp_path))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no Python test ran" in done.stdout
