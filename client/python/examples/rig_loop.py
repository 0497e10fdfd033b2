#!/usr/bin/env python3
"""A closed-loop session run from a rig's trial loop, in the style of a PsychoPy script.

No PsychoPy here: present() and record() stand for the two lines a rig has. On a PsychoPy rig,
present() would be `visual.ImageStim(win, image=np.flipud(image) / 127.5 - 1).draw(); win.flip()`
and record() would read spike counts from the acquisition system; here each channel is a virtual
neuron (an output of the demo_population model, asked of the server).

    python3 client/python/examples/rig_loop.py --server 127.0.0.1:50051 --pool demo
"""

import argparse

import numpy as np

import stimloop


def present(image: np.ndarray) -> None:
    """Shows one stimulus (uint8, H x W x 3) for a trial."""


def record(client: stimloop.Client, image: np.ndarray) -> np.ndarray:
    """Spike counts of the session's channels during the trial (here: two virtual neurons)."""
    rates = np.abs(client.predict("demo_population", image)[:2]) * 5
    return np.random.default_rng().poisson(rates).astype(float)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--pool", default="demo", help="an image pool of the server (--pool)")
    parser.add_argument("--session", default="rig-loop")
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--count", type=int, default=6, help="stimuli per block")
    parser.add_argument("--steps", type=int, default=20, help="synthesis steps")
    parser.add_argument("--deadline-ms", type=float, default=2000)
    parser.add_argument("--token-file")
    parser.add_argument("--tls-ca")
    args = parser.parse_args()

    with stimloop.Client(args.server, token_file=args.token_file, tls=args.tls_ca,
                         timeout=60) as client:
        client.open_session(args.session, channels=["ch0", "ch1"], base_model="demo_population",
                            pool=args.pool, rig="rig_loop.py", min_stimuli=4)
        for b in range(args.blocks):
            # Pool images until the channels are calibrated, then stimuli synthesized for them.
            strategy = "pool" if b < 1 else stimloop.block_strategy(
                mix={"pool": args.count // 2, "synthesize": args.count - args.count // 2},
                synthesis={"steps": args.steps})
            # The block id makes a retry after a lost reply return the same block.
            block = client.next_block(args.session, args.count, strategy, block_id=f"b{b}",
                                      deadline_ms=args.deadline_ms)
            counts = []
            for stimulus in block.stimuli:
                present(stimulus.image)
                counts.append(record(client, stimulus.image))
            report = client.report_responses(args.session, block.stimulus_ids, np.array(counts))
            r = report.calibration.cv_r
            median_r = f"{np.nanmedian(r):.3f}" if np.isfinite(r).any() else "-"
            print(f"block {b}: {len(block.stimuli)} stimuli ({block.stop_reason}), "
                  f"{report.total_trials} trials, calibration v{report.calibration.version}, "
                  f"median cv r {median_r}")
        info = client.close_session(args.session)
        print(f"session {info.session_id}: {info.state}, {info.blocks} blocks, "
              f"{info.trials} trials")


if __name__ == "__main__":
    main()
