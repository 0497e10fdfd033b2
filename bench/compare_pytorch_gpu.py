#!/usr/bin/env python3
"""stimloop against PyTorch on the same GPU: forward throughput, one preferred stimulus, all 219.

Runs, on one card, one after another:
  stimloop-bench --backend all --json          (a) forward images/s, batch 1/64/256, median model,
                                                   stimloop's kernels and cuDNN's
  stimloop-bench-gpu --json                    (b) one 1000-step cowley2026 stimulus, (c) all 219
                                                   compact models x 1 stimulus, custom vs cuDNN
  PyTorch eager, float32 (TF32 off), the same Keras semantics (torch_keras.py, checked against
  golden/ first):
    (a) forward at batch 1/64/256, images copied in and outputs out per call, as stimloop-bench;
    (b) the authors' eager loop (classes/class_synth.py: a gradient pass, numpy/scipy blur and
        step, a forward pass) for --torch-steps steps, scaled to 1000;
    (c) that loop over --torch-models models (scaled to 219: eager runs are independent).
Then one table with ratios (stimloop speed / torch speed).

  python3 bench/compare_pytorch_gpu.py --bin DIR [--data DIR] [--json FILE]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bin", default=os.path.join(REPO, "build", "bin"), help="stimloop binaries")
    p.add_argument("--data", default=os.environ.get("STIMLOOP_V4_DATA")
                   or os.path.join(REPO, "..", "shared", "v4"), help="published V4 data")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--torch-steps", type=int, default=200, help="torch (b) steps, scaled")
    p.add_argument("--torch-models", type=int, default=4, help="torch (c) models, scaled to 219")
    p.add_argument("--min-time", type=float, default=1.0)
    p.add_argument("--step", default="both", choices=("graph", "persistent", "both"),
                   help="stimloop's custom-kernel step (stimloop-bench-gpu --step)")
    p.add_argument("--json", help="write everything measured here")
    return p.parse_args()


ARGS = parse_args()
import numpy as np  # noqa: E402
import torch  # noqa: E402

from torch_keras import MEANS, TorchKeras, torch_cowley2026  # noqa: E402

torch.backends.cudnn.allow_tf32 = False  # float32 throughout, like stimloop's default
torch.backends.cuda.matmul.allow_tf32 = False
torch.set_grad_enabled(False)
DEVICE = "cuda"


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run_json(cmd, json_file):
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    with open(json_file) as f:
        return json.load(f)


def time_calls(fn, min_time, min_reps=5):
    fn()
    torch.cuda.synchronize()
    times, total = [], 0.0
    while len(times) < min_reps or total < min_time:
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
        total += times[-1]
    return statistics.median(times)


def main():
    golden = os.path.join(ARGS.data, "golden")
    rows = [line.rstrip("\n").split("\t") for line in open(os.path.join(golden, "models_list.txt"))
            if line.strip() and not line.startswith("#")]
    by_macs = sorted(rows, key=lambda r: int(r[5]))
    median_row = by_macs[(len(by_macs) - 1) // 2]
    median_path = os.path.join(ARGS.data, "compact_models", median_row[3])
    out = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}

    # 1. stimloop, both backends.
    tmp = os.environ.get("OUT", "/tmp")
    p = subprocess.run([os.path.join(ARGS.bin, "stimloop-bench"), "--backend", "all", "--model",
                        median_path, "--batch", "1", "--batch", "64", "--batch", "256",
                        "--min-time", str(ARGS.min_time), "--json"],
                       check=True, capture_output=True, text=True)
    bench = json.loads(p.stdout)
    gpu_json = os.path.join(tmp, "bench_gpu.json")
    synth = run_json([os.path.join(ARGS.bin, "stimloop-bench-gpu"), "--steps", str(ARGS.steps),
                      "--step", ARGS.step, "--json", gpu_json], gpu_json)
    out["stimloop_bench"], out["stimloop_bench_gpu"] = bench, synth

    # 2. torch: verify, then time.
    model = TorchKeras(median_path, DEVICE)
    raw = np.load(os.path.join(golden, "images_raw_uint8.npy"))[:8]
    x = torch.from_numpy((raw - np.asarray(MEANS)).astype(np.float32)).to(DEVICE)
    ref = np.load(os.path.join(golden, "compact_responses_f64.npy"))[int(median_row[0])][:8]
    got = model(x).cpu().numpy()[:, 0]
    err = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
    log(f"torch on {DEVICE} vs golden: {err:.2e} relative")
    if not err < 1e-3:
        sys.exit("compare_pytorch_gpu: torch disagrees with golden/")
    rng = np.random.default_rng(1)
    torch_fwd = {}
    for b in (1, 64, 256):
        host = torch.from_numpy(
            (rng.integers(0, 256, size=(b, 112, 112, 3)) - np.asarray(MEANS)).astype(np.float32))
        sec = time_calls(lambda: model(host.to(DEVICE)).cpu(), ARGS.min_time)
        torch_fwd[b] = b / sec
    t0 = time.perf_counter()
    torch_cowley2026(model, ARGS.torch_steps, 0, DEVICE)
    torch_b = (time.perf_counter() - t0) * ARGS.steps / ARGS.torch_steps
    t0 = time.perf_counter()
    for row in rows[:ARGS.torch_models]:
        m = TorchKeras(os.path.join(ARGS.data, "compact_models", row[3]), DEVICE)
        torch_cowley2026(m, ARGS.torch_steps, 0, DEVICE)
    torch_c = ((time.perf_counter() - t0) * (ARGS.steps / ARGS.torch_steps)
               * (len(rows) / ARGS.torch_models))
    out["torch"] = {"forward_images_per_s": torch_fwd, "b_s_scaled": torch_b,
                    "c_s_scaled": torch_c, "torch_steps": ARGS.torch_steps,
                    "torch_models": ARGS.torch_models}

    # 3. The table.
    print(f"\nGPU {out['gpu']}, torch {out['torch']}, median model {median_row[3]}")
    print("| case | stimloop (custom) | stimloop (cuDNN) | torch eager | custom / torch |")
    print("| --- | ---: | ---: | ---: | ---: |")
    ips = {(r["backend"], r["pass"], r["batch"]): r["images_per_s"] for r in bench["results"]}
    for b in (1, 64, 256):
        c, d, t = ips.get(("cuda", "forward", b)), ips.get(("cudnn", "forward", b)), torch_fwd[b]
        print(f"| (a) forward b={b}, img/s | {c:.0f} | {d or 0:.0f} | {t:.0f} | {c / t:.2f} |")
    runs = {}
    for r in synth["runs"]:  # the first of each: the device run, not SynthesisRun's
        runs.setdefault((r["case"][:3], r["backend"]), r)
    for case, tval in (("(b)", torch_b), ("(c)", torch_c)):
        c, d = runs.get((case, "cuda")), runs.get((case, "cudnn"))
        if c is None:
            continue
        cs, ds = c["total_s_scaled"], (d["total_s_scaled"] if d else float("nan"))
        print(f"| {case} {ARGS.steps} steps, s | {cs:.3f} | {ds:.3f} | {tval:.2f} (scaled) | "
              f"{tval / cs:.1f}x faster |")
        p = runs.get((case, "cuda-persistent"))
        if p is not None:
            ps = p["total_s_scaled"]
            print(f"| {case} {ARGS.steps} steps, s, persistent kernel | {ps:.3f} | | "
                  f"{tval:.2f} (scaled) | {tval / ps:.1f}x faster |")
    if ARGS.json:
        with open(ARGS.json, "w") as f:
            json.dump(out, f, indent=2, default=str)


if __name__ == "__main__":
    main()
