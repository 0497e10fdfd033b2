"""The Python client's tests under ctest.

    run_pytest.py --bin-dir DIR --python-path DIR [--tests PATH] [PYTEST ARGS...]

Exits 77 (ctest: skipped) when this Python lacks python3-grpcio. Where grpcio is installed,
python3-protobuf, python3-numpy and python3-pytest must be too, pytest must pass *and* at least
one test must have passed: a run in which everything was skipped or deselected fails, so CI
cannot go green on such a machine without having run the client.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

SKIP = 77
NEEDED = {"grpc": "python3-grpcio", "google.protobuf": "python3-protobuf",
          "numpy": "python3-numpy", "pytest": "python3-pytest"}


def missing_modules() -> list[str]:
    missing = []
    for module, package in NEEDED.items():
        try:
            importlib.import_module(module)
        except ImportError:
            missing.append(f"{package} (import {module})")
    return missing


class Outcomes:
    """Counts the outcomes of the tests' call phases."""

    def __init__(self):
        self.passed = self.failed = self.skipped = 0

    def pytest_runtest_logreport(self, report):
        if report.when == "call" and report.passed:
            self.passed += 1
        elif report.failed:
            self.failed += 1
        elif report.skipped:
            self.skipped += 1


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True, help="where stimloop-server is")
    parser.add_argument("--python-path", required=True, help="the staged stimloop package")
    parser.add_argument("--tests", default=str(Path(__file__).resolve().parent),
                        help="the tests to run (default: this folder)")
    args, pytest_args = parser.parse_known_args()
    missing = missing_modules()
    if missing and missing[0].startswith("python3-grpcio"):
        print(f"SKIPPED: the Python client's tests need {', '.join(missing)} "
              f"for {sys.executable}")
        return SKIP
    if missing:  # grpcio is here, so the tests must run
        print(f"FAIL: python3-grpcio is installed but {', '.join(missing)} is missing "
              f"for {sys.executable} (scripts/install-deps.sh installs it)")
        return 1
    import pytest

    # Absolute: tests run the binaries and examples from other working directories.
    os.environ["STIMLOOP_BIN_DIR"] = os.path.abspath(args.bin_dir)
    os.environ["STIMLOOP_PYTHON_PATH"] = os.path.abspath(args.python_path)
    sys.path.insert(0, os.environ["STIMLOOP_PYTHON_PATH"])
    sys.dont_write_bytecode = True  # nothing written into the source tree
    outcomes = Outcomes()
    code = pytest.main(["-p", "no:cacheprovider", "-rs", args.tests, *pytest_args],
                       plugins=[outcomes])
    print(f"python client tests: {outcomes.passed} passed, {outcomes.failed} failed, "
          f"{outcomes.skipped} skipped")
    if outcomes.passed == 0 and code in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        print("FAIL: grpcio is installed but no Python test ran")
        return 1
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
