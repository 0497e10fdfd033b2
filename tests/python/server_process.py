"""A real stimloop-server for the tests: started on a free loopback port, stopped at the end."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path


class ServerProcess:
    """stimloop-server --listen 127.0.0.1:0 ... ; `address` once it prints its port."""

    def __init__(self, bin_dir: Path, work: Path, *args: str):
        self.log = work / "server.log"
        self.stdout = work / "server.out"
        command = [str(bin_dir / "stimloop-server"), "--listen", "127.0.0.1:0", "--backend", "cpu",
                   "--threads", "1", "--log-level", "warn", *args]
        with open(self.stdout, "wb") as out, open(self.log, "wb") as err:
            self.process = subprocess.Popen(command, stdout=out, stderr=err)
        self.port = self._wait_for_port()
        self.address = f"127.0.0.1:{self.port}"

    def _wait_for_port(self, timeout: float = 60.0) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            match = re.search(r"listening on port (\d+)", self.stdout.read_text())
            if match:
                return int(match.group(1))
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"stimloop-server did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def make_pki(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 / localhost and a client certificate signed by it,
    and an unrelated CA, made with the openssl command."""
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    for ca in ("ca", "other_ca"):  # other_ca signed nothing: a client trusting it must fail
        (folder / f"{ca}.cnf").write_text(
            "[req]\ndistinguished_name = dn\nprompt = no\nx509_extensions = v3_ca\n[v3_ca]\n"
            "basicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n"
            f"subjectKeyIdentifier = hash\n[dn]\nCN = stimloop python test {ca}\n")
        run("req", "-x509", "-new", "-config", f"{ca}.cnf", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem",
            "-days", "2")
    leaves = {"server": ("localhost", "serverAuth\nsubjectAltName = DNS:localhost, IP:127.0.0.1"),
              "client": ("stimloop python test client", "clientAuth")}
    for serial, (name, (common_name, usage)) in enumerate(leaves.items(), start=2):
        (folder / f"{name}.cnf").write_text(
            "[req]\ndistinguished_name = dn\nprompt = no\n[ext]\nbasicConstraints = critical, "
            f"CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = {usage}\n"
            f"[dn]\nCN = {common_name}\n")
        run("req", "-new", "-config", f"{name}.cnf", "-newkey", "ec", "-pkeyopt",
            "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", f"{name}.key", "-out",
            f"{name}.csr")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-set_serial", str(serial), "-days", "2", "-extfile", f"{name}.cnf", "-extensions",
            "ext", "-out", f"{name}.pem")
    return {name: folder / f"{name}.pem" for name in ("ca", "other_ca", "server", "client")} | {
        "server_key": folder / "server.key", "client_key": folder / "client.key"}


def bin_dir() -> Path:
    """Where stimloop-server and stimloop are: STIMLOOP_BIN_DIR, else build/bin."""
    default = Path(__file__).resolve().parents[2] / "build" / "bin"
    return Path(os.environ.get("STIMLOOP_BIN_DIR", default))
