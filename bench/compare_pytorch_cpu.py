#!/usr/bin/python3
"""stimloop against PyTorch on the CPU, same models, same thread count, same machine.

PyTorch runs the Keras semantics of docs/domain.md (TF 'same' padding with the extra pixel
after, BatchNorm in inference mode with the config's epsilon, SeparableConv2D = depthwise then
pointwise, channels-last Flatten into Dense), float32, eager, BatchNorm folded into the preceding
conv as stimloop does; its outputs are checked against golden/ (float64) before any timing.

Measured, each case ALTERNATING stimloop, torch, stimloop, torch, ... (--reps rounds, medians
reported, so slow phases of a shared machine hit both sides alike):
  (a) forward images/s at batch 1 and 64: the smallest, the median and the largest compact model
  (b) forward + input gradient, batch 1, median model
  (c) one cowley2026 preferred stimulus (1000 steps), wall time; torch runs the authors' eager
      loop (classes/class_synth.py: gradient pass, numpy/scipy blur and step, forward pass)
  (d) the 50-filter shared model (219 outputs), forward, batch 64
and the arithmetic floor: MACs / the peak FMA rate measured by build/bin/peak-fma.
Ratios are stimloop speed / torch speed (> 1: stimloop is faster).

  /usr/bin/python3 bench/compare_pytorch_cpu.py [--threads 2] [--reps 3] [--quick] [--json]
                                                [--isa avx2]
Needs: apt-get install python3-torch python3-h5py python3-numpy python3-scipy; and a build with
stimloop, stimloop-bench and peak-fma (ninja -C build stimloop stimloop-bench peak-fma).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
VERIFY_IMAGES = [0, 1, 2, 3, 32, 33, 34, 35]  # golden images: 4 of session 190923, 4 of 210225
TOLERANCE = 1e-3  # relative error that fails the run (float32 against float64 is ~1e-6)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=os.environ.get("STIMLOOP_V4_DATA")
                   or os.path.join(REPO, "..", "shared", "v4"), help="published V4 data")
    p.add_argument("--build", default=os.path.join(REPO, "build"), help="stimloop build dir")
    p.add_argument("--threads", type=int, default=2, help="threads for both (default 2)")
    p.add_argument("--reps", type=int, default=None, help="alternation rounds (default 3)")
    p.add_argument("--min-time", type=float, default=None,
                   help="seconds of timed calls per forward measurement (default 1)")
    p.add_argument("--steps", type=int, default=None, help="synthesis steps (default 1000)")
    p.add_argument("--quick", action="store_true", help="smoke test: 1 round, 100 steps")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--isa", choices=("native", "avx2"), default="native",
                   help="avx2: both sides limited to AVX2 + FMA (stimloop's AVX2 kernels, "
                        "torch's ATen and oneDNN capped likewise), as on a processor without "
                        "AVX-512; the floor then uses the AVX2 peak")
    a = p.parse_args()
    a.reps = a.reps or (1 if a.quick else 3)
    a.min_time = a.min_time if a.min_time is not None else (0.25 if a.quick else 1.0)
    a.steps = a.steps or (100 if a.quick else 1000)
    return a


ARGS = parse_args()
# glibc hands big freed blocks back to the OS, so each torch op at batch 64 would page-fault its
# 10-150 MB output afresh (measured: 4-10x slower). Keeping them in the heap is what jemalloc or
# tcmalloc would do for torch; glibc reads these only at start-up, hence the re-exec. stimloop,
# which allocates its workspace once, gets the environment a user's shell would give it.
ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": str(1 << 32), "MALLOC_TRIM_THRESHOLD_": str(1 << 34)}
if any(os.environ.get(k) != v for k, v in ALLOCATOR_ENV.items()):
    os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *sys.argv[1:]],
              {**os.environ, **ALLOCATOR_ENV})
# Thread count before torch (and its OpenMP runtime) loads; the same variables reach stimloop.
for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[var] = str(ARGS.threads)
# Instruction set, also before torch loads (ATen and oneDNN read these once).
PEAK_KERNEL = {"native": None, "avx2": "avx2_fma_256"}[ARGS.isa]
if ARGS.isa == "avx2":
    os.environ.update({"STIMLOOP_CPU_KERNELS": "avx2", "ATEN_CPU_CAPABILITY": "avx2",
                       "ONEDNN_MAX_CPU_ISA": "AVX2", "DNNL_MAX_CPU_ISA": "AVX2"})
try:
    import h5py
    import numpy as np
    import scipy.ndimage
    import torch
    import torch.nn.functional as F
except ImportError as e:
    print(f"compare_pytorch_cpu: {e}.\nInstall Debian's packages (no pip needed):\n"
          "  sudo apt-get install python3-torch python3-h5py python3-numpy python3-scipy\n"
          "and run this script with /usr/bin/python3.", file=sys.stderr)
    sys.exit(3)
torch.set_num_threads(ARGS.threads)
torch.set_grad_enabled(False)  # forward timings run without autograd; gradients enable it


def log(msg):
    print(msg, file=sys.stderr, flush=True)


from torch_keras import MEANS, TorchKeras, torch_cowley2026  # noqa: E402 (after the thread setup)


# ---------------------------------------------------------------------------- helpers
def median(xs):
    return statistics.median(xs)


def time_calls(fn, min_time, min_reps=3):
    """Median seconds per call after one warm-up, like stimloop-bench's harness."""
    fn()
    times, total = [], 0.0
    while len(times) < min_reps or total < min_time:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
        total += times[-1]
    return median(times)


def run_json(cmd):
    env = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    return json.loads(out.stdout)


def binary(name):
    path = os.path.join(ARGS.build, "bin", name)
    if not os.access(path, os.X_OK):
        sys.exit(f"compare_pytorch_cpu: {path} not found; build it first "
                 f"(ninja -C {ARGS.build} stimloop stimloop-bench peak-fma) or pass --build")
    return path


def stimloop_bench(model_path, batches):
    """{(pass, batch): images/s} from one stimloop-bench process (it also times the gradient)."""
    j = run_json([binary("stimloop-bench"), "--model", model_path, "--backend", "cpu", "--json",
                  "--min-time", str(ARGS.min_time), "--batch", *map(str, batches)])
    return {(r["pass"], r["batch"]): r["images_per_s"] for r in j["results"]}, j


def random_images(n, seed=12345):
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, size=(n, 112, 112, 3)).astype(np.float32)
    return torch.from_numpy(raw - np.asarray(MEANS, dtype=np.float32))


def stimloop_cowley2026(model_id, steps):
    """(wall_ms of the run from its JSON record, response of the 8-bit stimulus)."""
    png = os.path.join(tempfile.gettempdir(), f"compare_pytorch_cpu_{os.getpid()}.png")
    try:
        rec = run_json([binary("stimloop"), "synthesize", "--models",
                        os.path.join(ARGS.data, "compact_models"), "--model", model_id,
                        "--objective", "max", "--method", "cowley2026", "--steps", str(steps),
                        "--out", png, "--no-progress", "--json"])[0]
    finally:  # the PNG and the record stimloop writes beside it
        for path in (png, png[:-4] + ".json"):
            if os.path.exists(path):
                os.remove(path)
    return rec["wall_ms"] / 1e3, rec["response"]


# ---------------------------------------------------------------------------- main
def main():
    for name in ("stimloop", "stimloop-bench", "peak-fma"):
        binary(name)  # fail now, not after the verification
    data = os.path.normpath(ARGS.data)
    golden = os.path.join(data, "golden")
    if not os.path.isfile(os.path.join(golden, "models_list.txt")):
        sys.exit(f"compare_pytorch_cpu: no golden/models_list.txt under {data} (--data)")
    rows = [line.split("\t") for line in open(os.path.join(golden, "models_list.txt"))
            if line.strip() and not line.startswith("#")]
    by_macs = sorted(rows, key=lambda r: int(r[5]))
    picks = {"small": by_macs[0], "median": by_macs[(len(by_macs) - 1) // 2],
             "largest": by_macs[-1]}  # the lower median, as stimloop-bench picks it
    shared_file = "shared_compact_model_50filters.keras"
    shared_idx = [line.split("\t")[1].strip() for line in
                  open(os.path.join(golden, "shared_models.txt"))
                  if not line.startswith("#")].index(shared_file)

    # 1. Load and verify every torch model against the float64 golden responses.
    raw = np.load(os.path.join(golden, "images_raw_uint8.npy"))[VERIFY_IMAGES]
    x_verify = torch.from_numpy((raw - np.asarray(MEANS)).astype(np.float32))
    compact = np.load(os.path.join(golden, "compact_responses_f64.npy"))
    models, verify = {}, {}
    for role, row in picks.items():
        models[role] = TorchKeras(os.path.join(data, "compact_models", row[3]))
        ref = compact[int(row[0])][VERIFY_IMAGES][:, None]
        verify[role] = (models[role](x_verify).numpy(), ref, row[3], int(row[5]))
    models["shared"] = TorchKeras(os.path.join(data, "shared_compact_models", shared_file))
    ref = np.load(os.path.join(golden, "shared_responses_f64.npy"))[shared_idx][VERIFY_IMAGES]
    verify["shared"] = (models["shared"](x_verify).numpy(), ref, shared_file, None)
    errors, failed = {}, False
    for role, (got, ref, name, macs) in verify.items():
        abs_err = float(np.max(np.abs(got - ref)))
        rel_err = float(np.max(np.abs(got - ref) / np.max(np.abs(ref), axis=0)))  # per output
        errors[role] = {"model": name, "max_abs_error": abs_err, "max_rel_error": rel_err}
        failed |= not rel_err < TOLERANCE
        if macs is not None and macs != models[role].macs:
            sys.exit(f"compare_pytorch_cpu: {name}: {models[role].macs} MACs, list says {macs}")
        log(f"verified {name}: max |torch - golden| = {abs_err:.2e} ({rel_err:.2e} relative to "
            f"the largest |response|) over {len(VERIFY_IMAGES)} images")
    # The input gradient too, on the first model of grad_models.txt (autograd through our ops).
    g_row = [r.split("\t") for r in open(os.path.join(golden, "grad_models.txt"))
             if not r.startswith("#")][0]
    g_model = TorchKeras(os.path.join(data, "compact_models", rows[int(g_row[3])][3]))
    g_ref = np.load(os.path.join(golden, "grad_input_f64.npy"))[0, 0]
    _, g = g_model.input_gradient(x_verify[:1])
    g_err = float(np.max(np.abs(g[0].numpy() - g_ref)) / np.max(np.abs(g_ref)))
    errors["input_gradient"] = {"model": rows[int(g_row[3])][3], "max_rel_error": g_err}
    failed |= not g_err < TOLERANCE
    log(f"verified the input gradient of {rows[int(g_row[3])][3]}: {g_err:.2e} relative")
    if failed:
        sys.exit(f"compare_pytorch_cpu: torch disagrees with golden/ beyond {TOLERANCE}")

    # 2. The measured peak (before and after the timings: the best is the uncontended machine).
    def peak(threads=ARGS.threads):
        j = run_json([binary("peak-fma"), "--threads", str(threads), "--json"])
        if PEAK_KERNEL:  # the ISA both sides are limited to, not the machine's best
            j.update(peak_kernel=PEAK_KERNEL,
                     peak_gmac_per_s=j["kernels"][PEAK_KERNEL]["gmac_per_s"],
                     peak_gflop_per_s=j["kernels"][PEAK_KERNEL]["gflop_per_s"])
        return j
    peaks = [peak()]
    single = peak(1)["peak_gmac_per_s"]

    # 3. Alternating rounds: stimloop, then torch, per model and per round.
    sl, tc = {}, {}  # case -> list of per-round values (images/s, or seconds for synthesis)
    def add(store, case, value):
        store.setdefault(case, []).append(value)

    x64, x1 = random_images(64), random_images(1)
    plan = [("small", [1, 64]), ("median", [1, 64]), ("largest", [1, 64]), ("shared", [64])]
    bench_meta = {}
    for rnd in range(ARGS.reps):
        log(f"round {rnd + 1}/{ARGS.reps}")
        for role, batches in plan:
            path = (os.path.join(data, "shared_compact_models", shared_file) if role == "shared"
                    else os.path.join(data, "compact_models", picks[role][3]))
            ips, bench_meta[role] = stimloop_bench(path, batches)
            m = models[role]
            for b in batches:
                add(sl, (role, "forward", b), ips[("forward", b)])
                x = x1 if b == 1 else x64
                add(tc, (role, "forward", b), b / time_calls(lambda: m(x), ARGS.min_time))
            if role == "median":
                add(sl, (role, "forward+gradient", 1), ips[("forward+gradient", 1)])
                add(tc, (role, "forward+gradient", 1),
                    1 / time_calls(lambda: m.input_gradient(x1), ARGS.min_time))
        median_id = picks["median"][3].removesuffix(".keras")
        t0 = time.perf_counter()
        secs, resp = stimloop_cowley2026(median_id, ARGS.steps)
        add(sl, ("median", "cowley2026", ARGS.steps), secs)
        add(sl, ("median", "cowley2026 process", ARGS.steps), time.perf_counter() - t0)
        add(sl, ("median", "cowley2026 response", ARGS.steps), resp)
        t0 = time.perf_counter()
        resp = torch_cowley2026(models["median"], ARGS.steps, seed=rnd)
        add(tc, ("median", "cowley2026", ARGS.steps), time.perf_counter() - t0)
        add(tc, ("median", "cowley2026 response", ARGS.steps), resp)
    peaks.append(peak())
    best_peak = max(peaks, key=lambda p: p["peak_gmac_per_s"])
    peak_gmac = best_peak["peak_gmac_per_s"]

    # 4. The table: medians over rounds, ratios, and the floor (MACs / measured peak).
    for role, meta in bench_meta.items():  # both sides count the same arithmetic
        if meta["model"]["macs_per_image"] != models[role].macs:
            log(f"warning: {role}: stimloop counts {meta['model']['macs_per_image']} MACs, "
                f"torch model {models[role].macs}")
    order = [("small", "forward", 1), ("small", "forward", 64), ("median", "forward", 1),
             ("median", "forward", 64), ("largest", "forward", 1), ("largest", "forward", 64),
             ("median", "forward+gradient", 1), ("median", "cowley2026", ARGS.steps),
             ("shared", "forward", 64)]
    table = []
    for case in order:
        role, what, b = case
        s, t = median(sl[case]), median(tc[case])
        macs = models[role].macs
        if what == "cowley2026":  # seconds. Floor: one forward + backward per step (stimloop's
            # count; the authors' loop adds a forward pass per step, 1.5x the arithmetic)
            floor = ARGS.steps * 2 * macs / (peak_gmac * 1e9)
            table.append({"case": f"(c) cowley2026 {b} steps, {role}", "unit": "s",
                          "stimloop": s, "torch": t, "ratio": t / s, "floor": floor,
                          "stimloop_response": median(sl[(role, "cowley2026 response", b)]),
                          "torch_response": median(tc[(role, "cowley2026 response", b)])})
            continue
        per_image = macs * (2 if what == "forward+gradient" else 1)
        floor = peak_gmac * 1e9 / per_image
        label = {"forward": "(d)" if role == "shared" else "(a)", "forward+gradient": "(b)"}[what]
        table.append({"case": f"{label} {what} b={b}, {role} ({macs / 1e6:.1f} M MAC)",
                      "unit": "img/s", "stimloop": s, "torch": t, "ratio": s / t,
                      "floor": floor, "stimloop_pct_peak": 100 * s / floor,
                      "torch_pct_peak": 100 * t / floor})
    result = {"threads": ARGS.threads, "reps": ARGS.reps, "min_time_s": ARGS.min_time,
              "isa": ARGS.isa,
              "torch": torch.__version__, "models": {r: p[3] for r, p in picks.items()},
              "verification": errors, "peak_fma": best_peak, "peak_fma_runs": peaks,
              "peak_gmac_per_s_1_thread": single, "table": table,
              "rounds": {"stimloop": {"|".join(map(str, k)): v for k, v in sl.items()},
                         "torch": {"|".join(map(str, k)): v for k, v in tc.items()}}}
    if ARGS.json:
        print(json.dumps(result, indent=2))
        return
    print(f"stimloop vs PyTorch {torch.__version__} (CPU, float32, eager, BatchNorm folded), "
          f"{ARGS.threads} thread(s), median of {ARGS.reps} alternating round(s)")
    if ARGS.isa == "avx2":
        print("instruction set: both sides limited to AVX2 + FMA (STIMLOOP_CPU_KERNELS=avx2, "
              "ATEN_CPU_CAPABILITY=avx2, ONEDNN_MAX_CPU_ISA=AVX2)")
    print(f"peak (peak-fma, {best_peak['peak_kernel']}): {peak_gmac:.1f} GMAC/s on "
          f"{ARGS.threads} thread(s) (1 thread: {single:.1f}); floor = MACs / peak")
    if peak_gmac < 0.8 * ARGS.threads * single:
        print(f"  note: {ARGS.threads} threads reach only {peak_gmac / single:.2f}x one thread: "
              "other load is sharing the cores; every number below is affected alike")
    print(f"\n{'case':<46} {'stimloop':>10} {'torch':>10} {'ratio':>6} {'floor':>10} "
          f"{'%peak s/t':>11}")
    for r in table:
        pct = (f"{r['stimloop_pct_peak']:4.1f}/{r['torch_pct_peak']:4.1f}"
               if "torch_pct_peak" in r else "")
        d = 2 if r["unit"] == "s" else 1
        print(f"{r['case']:<46} {r['stimloop']:>10.{d}f} {r['torch']:>10.{d}f} "
              f"{r['ratio']:>6.2f} {r['floor']:>10.{d}f} {pct:>11}   {r['unit']}")
    print("\nratio = stimloop speed / torch speed (> 1: stimloop faster). (c): seconds, stimloop's "
          "wall_ms (model loaded, no process start);\n  torch: the authors' loop, 2 passes a "
          "step; floor = steps x (forward + backward) MACs / peak.\n  MACs are the "
          "direct convolution's; stimloop's layer-0 forward does 30 of every 75 of them "
          "(Winograd F(4,5)), so its %peak can pass 100.")
    for r in table:
        if "stimloop_response" in r:
            print(f"(c) response of the 8-bit stimulus: stimloop {r['stimloop_response']:.2f}, "
                  f"torch {r['torch_response']:.2f} (different noise seeds)")
    print("torch vs golden float64 (max relative error): " + ", ".join(
        f"{k} {v['max_rel_error']:.1e}" for k, v in errors.items()))


if __name__ == "__main__":
    main()
