"""Builds the stimloop Python package: stubs generated from proto/ at build time, never committed.

Two uses, one code path:
- `python3 stimloop_build.py OUT_DIR [PROTO_DIR]`: stages an importable tree in OUT_DIR
  (the package's sources plus the generated stubs); CMake runs this into the build tree.
- A PEP 517 build backend (pyproject.toml), so that `pip install ./client/python` works with no
  network: it needs nothing but the standard library, `protoc` and `grpc_python_plugin` (Debian's
  protobuf-compiler and protobuf-compiler-grpc). A setuptools backend would make pip's isolated
  build fetch setuptools from PyPI.

The stubs come from the system protoc (3.21 on Debian 12), which matches Debian's python3-protobuf
(4.21); Debian's python3-grpc-tools is too old (1.14) for it.
"""

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = "stimloop"
# stimloop.v1 services; the generated modules import each other as `stimloop.v1.*`, which is this
# package's own `v1` subpackage.
SERVICE_PROTOS = ["stimloop/v1/stimloop.proto", "stimloop/v1/sessions.proto"]
# Messages only: the health stub would import `grpc.health.v1`, which is grpcio's namespace.
HEALTH_PROTO = "grpc/health/v1/health.proto"


def proto_dir() -> Path:
    """proto/ of the repository, or STIMLOOP_PROTO_DIR (a copy of it) for an unpacked sdist."""
    env = os.environ.get("STIMLOOP_PROTO_DIR")
    for candidate in ([Path(env)] if env else []) + [HERE.parent.parent / "proto"]:
        if (candidate / SERVICE_PROTOS[0]).is_file():
            return candidate
    raise FileNotFoundError(
        "stimloop_build: proto/stimloop/v1/stimloop.proto not found; "
        "build from the repository or set STIMLOOP_PROTO_DIR")


def _tool(name: str, env: str) -> str:
    path = os.environ.get(env) or shutil.which(name)
    if path is None:
        raise FileNotFoundError(
            f"stimloop_build: {name} not found (Debian: apt-get install protobuf-compiler "
            "protobuf-compiler-grpc)")
    return path


def generate(out_dir: Path, protos: Path) -> None:
    """Writes stimloop/v1/*_pb2.py, *_pb2_grpc.py and stimloop/_health/..._pb2.py under out_dir."""
    package = out_dir / PACKAGE
    package.mkdir(parents=True, exist_ok=True)
    protoc = _tool("protoc", "PROTOC")
    subprocess.run(
        [protoc, f"--proto_path={protos}", f"--python_out={out_dir}", f"--grpc_out={out_dir}",
         f"--plugin=protoc-gen-grpc={_tool('grpc_python_plugin', 'GRPC_PYTHON_PLUGIN')}",
         *[str(protos / p) for p in SERVICE_PROTOS]],
        check=True)
    health_out = package / "_health"
    health_out.mkdir(exist_ok=True)
    subprocess.run(
        [protoc, f"--proto_path={protos}", f"--python_out={health_out}", str(protos / HEALTH_PROTO)],
        check=True)
    # Regular packages, so that importlib and pip's wheel see every generated folder.
    for folder in [package / "v1", health_out, health_out / "grpc", health_out / "grpc/health",
                   health_out / "grpc/health/v1"]:
        (folder / "__init__.py").touch()


def stage(out_dir: Path, protos: Path | None = None) -> None:
    """An importable tree in out_dir: the package's sources, then the generated stubs."""
    out_dir = Path(out_dir)
    target = out_dir / PACKAGE
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(HERE / PACKAGE, target,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    generate(out_dir, protos or proto_dir())


# ---- PEP 517 -----------------------------------------------------------------------------------

def _project() -> dict:
    with open(HERE / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _metadata() -> str:
    p = _project()
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {p['version']}",
             f"Summary: {p['description']}", f"Requires-Python: {p['requires-python']}"]
    lines += [f"Requires-Dist: {d}" for d in p.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def _dist_info() -> str:
    p = _project()
    return f"{p['name']}-{p['version']}.dist-info"


def _write_dist_info(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "METADATA").write_text(_metadata())
    (folder / "WHEEL").write_text(
        "Wheel-Version: 1.0\nGenerator: stimloop_build\nRoot-Is-Purelib: true\nTag: py3-none-any\n")


def get_requires_for_build_wheel(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    _write_dist_info(Path(metadata_directory) / _dist_info())
    return _dist_info()


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    name = f"{p['name']}-{p['version']}-py3-none-any.whl"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        stage(root)
        _write_dist_info(root / _dist_info())
        files = sorted(f for f in root.rglob("*") if f.is_file())
        record_lines = []
        with zipfile.ZipFile(Path(wheel_directory) / name, "w", zipfile.ZIP_DEFLATED) as wheel:
            for f in files:
                data = f.read_bytes()
                arcname = f.relative_to(root).as_posix()
                wheel.writestr(arcname, data)
                digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
                record_lines.append(f"{arcname},sha256={digest.decode()},{len(data)}")
            record = f"{_dist_info()}/RECORD"
            record_lines.append(f"{record},,")
            wheel.writestr(record, "\n".join(record_lines) + "\n")
    return name


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: stimloop_build.py OUT_DIR [PROTO_DIR]")
    stage(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) == 3 else None)
