"""Every example of the README's Python section runs as written (with the test server's address
in place of 127.0.0.1:50051); the MATLAB one is documented as untested."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def python_section() -> str:
    readme = (REPO / "README.md").read_text()
    start = readme.index("## Python client")
    return readme[start:readme.index("\n## ", start + 1)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", python_section(), re.S)


def run(command, address, cwd):
    env = dict(os.environ, PYTHONPATH=os.environ.get("STIMLOOP_PYTHON_PATH", ""))
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{command}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
    return done.stdout


def test_the_readme_has_the_examples():
    assert len(blocks("python")) == 1 and len(blocks("matlab")) == 1
    assert "not tested here" in python_section()


def test_readme_python_snippet(server, client, tmp_path):
    code = blocks("python")[0].replace("127.0.0.1:50051", server.address)
    out = run([sys.executable, "-c", code], server.address, tmp_path)
    assert "'demo', 'demo_population'" in out and "NOT_FOUND" in out
    assert (tmp_path / "preferred.png").is_file() and (tmp_path / "preferred.json").is_file()


@pytest.mark.parametrize("line", [line for block in blocks("sh") for line in block.splitlines()
                                  if line.startswith("python3 client/python/examples/")],
                         ids=lambda line: line.split()[1].rsplit("/", 1)[-1])
def test_readme_example_commands(line, server, client, tmp_path):
    args = line.replace("127.0.0.1:50051", server.address).split()
    args = [sys.executable, str(REPO / args[1]), *args[2:]]
    out = run(args, server.address, tmp_path)
    if "rig_loop" in line:
        assert "session rig-loop: CLOSED, 3 blocks" in out
    else:
        assert len(list((tmp_path / "campaign").glob("*.png"))) == 8
        assert len(list((tmp_path / "campaign").glob("*.json"))) == 8
