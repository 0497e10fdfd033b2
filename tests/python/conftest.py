"""Fixtures: the stimloop binaries, a demo image pool, and real servers (plain; TLS + token)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pictures import grating, noise, write_png
from server_process import ServerProcess, bin_dir, make_pki

TOKEN = "python-client-test-token-0123456789"

# The client under test: the build tree's staged package (run_pytest.py puts it on sys.path).
stimloop = pytest.importorskip("stimloop", reason="the stimloop package is not built")


@pytest.fixture(scope="session")
def bins() -> Path:
    folder = bin_dir()
    for name in ("stimloop-server", "stimloop"):
        if not (folder / name).is_file():
            pytest.skip(f"{folder / name} is not built")
    return folder


@pytest.fixture(scope="session")
def pool(tmp_path_factory) -> Path:
    """40 images, as scripts/make-demo-pool.sh makes (gratings and noise), written here in numpy:
    40 runs of the CLI take a minute on a loaded machine."""
    folder = tmp_path_factory.mktemp("pool")
    for o in (0, 22, 45, 67, 90, 112, 135, 157):
        for p in (6, 10, 16, 24):
            write_png(grating(o, p), folder / f"grating_o{o}_p{p}.png")
    for seed in range(1, 9):
        write_png(noise(seed), folder / f"noise{seed}.png")
    return folder


@pytest.fixture(scope="session")
def server(bins, pool, tmp_path_factory):
    work = tmp_path_factory.mktemp("server")
    process = ServerProcess(bins, work, "--data-dir", str(work / "data"), "--pool", f"demo={pool}")
    yield process
    process.stop()


@pytest.fixture(scope="session")
def client(server):
    with stimloop.Client(server.address, timeout=120) as c:
        c.wait_until_serving(timeout=60)
        yield c


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("openssl not found: no certificates for the TLS tests")
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="session")
def secure_server(bins, pki, tmp_path_factory):
    """TLS and a bearer token."""
    work = tmp_path_factory.mktemp("secure")
    token_file = work / "tokens"
    token_file.write_text(f"{TOKEN}\n")
    process = ServerProcess(bins, work, "--data-dir", str(work / "data"),
                            "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"]),
                            "--auth-token-file", str(token_file))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def mutual_tls_server(bins, pki, tmp_path_factory):
    """TLS that requires a client certificate signed by the test CA."""
    work = tmp_path_factory.mktemp("mutual")
    process = ServerProcess(bins, work, "--data-dir", str(work / "data"),
                            "--tls-cert", str(pki["server"]), "--tls-key", str(pki["server_key"]),
                            "--tls-client-ca", str(pki["ca"]))
    yield process
    process.stop()


@pytest.fixture(scope="session")
def images(tmp_path_factory):
    """Two gratings and a noise image as PNG files."""
    folder = tmp_path_factory.mktemp("images")
    made = {"vertical": grating(0), "horizontal": grating(90), "noise": noise(3)}
    return {name: write_png(image, folder / f"{name}.png") for name, image in made.items()}
