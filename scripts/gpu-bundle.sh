#!/usr/bin/env bash
# Prepares .device-data/ (git-ignored) for a lent GPU machine, which has nvcc and the driver but
# none of the Debian -dev libraries stimloop builds against and no network: the CUDA build from
# here (sm_80 + sm_90), the shared libraries it needs beyond the C/C++ runtime, and a compressed
# copy of the published models and the golden files the GPU tests read. Then, on the device:
#   bash scripts/gpu-check.sh        (run tool: carry [".device-data"])
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${STIMLOOP_V4_DATA:-../shared/v4}
BUILD_DIR=${BUILD_DIR:-build-gpu}
binaries=(stimloop_gpu_tests stimloop-bench stimloop-bench-synthesis stimloop-bench-gpu)  # no OpenCV
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_CXX_COMPILER_LAUNCHER=ccache \
  -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache -DSTIMLOOP_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="80;90" >/dev/null
cmake --build "$BUILD_DIR" --target "${binaries[@]}"
rm -rf .device-data
mkdir -p .device-data/bin .device-data/lib
for b in "${binaries[@]}"; do cp "$BUILD_DIR/bin/$b" .device-data/bin/; done
# Shared libraries outside the C/C++ runtime and the CUDA driver, which the device provides, and
# cuDNN (over 400 MB with its engines): the device's PyTorch ships cuDNN 9, which gpu-check.sh
# finds there.
for b in "${binaries[@]}"; do ldd "$BUILD_DIR/bin/$b"; done | awk '/=> \//{print $3}' | sort -u |
  grep -vE '/(libc|libm|libdl|librt|libpthread|libresolv|libnss[^/]*|libstdc\+\+|libgcc_s|ld-linux[^/]*|libcuda|libcudnn[^/]*)\.so' |
  while read -r lib; do cp -L "$lib" .device-data/lib/; done
if [ -d "$DATA/golden" ]; then
  tar -C "$DATA" -cJf .device-data/v4.tar.xz compact_models shared_compact_models \
    golden/README.md golden/images_raw_uint8.npy golden/compact_responses_f64.npy \
    golden/shared_responses_f64.npy golden/models_list.txt golden/shared_models.txt \
    golden/synthesis.json golden/images_list.txt
fi
# The binaries (mostly sm_80 + sm_90 fatbins) and libraries compress about 5x: packed, the bundle
# stays well under the device tool's 64 MiB carry limit (unpacked it had reached 63.6 MiB).
tar -C .device-data -cJf .device-data/bin-lib.tar.xz bin lib
rm -rf .device-data/bin .device-data/lib
# The adversarial bar's spread over 1200 natural JPEGs needs the decoder the bundle lacks.
[ -f out/natural_std.json ] || scripts/natural-std.sh out/natural_std.json >/dev/null
cp out/natural_std.json .device-data/
du -sh .device-data
