"""`pip install ./client/python` works with no network, into a venv that sees Debian's grpcio."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_pip_install_and_use(server, client, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip",
                    str(venv)], check=True)
    python = venv / "bin" / "python"
    # The venv borrows Debian's pip; --no-index: nothing may come from the network.
    install = subprocess.run([str(python), "-m", "pip", "install", "--no-index",
                              str(REPO / "client/python")], capture_output=True, text=True)
    assert install.returncode == 0, install.stdout + install.stderr
    check = subprocess.run(
        [str(python), "-c", "import stimloop, sys; c = stimloop.Client(sys.argv[1]); "
         "print(stimloop.__file__); print(c.model('demo').num_outputs)", server.address],
        cwd=tmp_path, capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert check.returncode == 0, check.stderr
    where, outputs = check.stdout.split()
    assert where.startswith(str(venv)) and outputs == "1"
    assert not list((REPO / "client/python").glob("*.egg-info"))
