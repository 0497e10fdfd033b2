#!/usr/bin/env bash
# Installs the Debian 12 packages stimloop builds with, skipping those already present.
# CUDA is optional and never installed here (it lives in /usr/local/cuda when a machine has it).
set -euo pipefail
PACKAGES=(
  build-essential cmake ninja-build pkg-config ccache python3
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev
  libhdf5-dev libzip-dev nlohmann-json3-dev libcli11-dev libssl-dev
  catch2 libbenchmark-dev
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libspdlog-dev libcpp-httplib-dev openssl
  libsqlite3-dev libeigen3-dev
  python3-grpcio python3-protobuf python3-numpy python3-pytest python3-venv
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
