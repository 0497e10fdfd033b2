#!/usr/bin/env python3
"""A synthesis campaign in notebook style: preferred and suppressive stimuli of each output of a
model, saved as PNG + JSON record (the files `stimloop synthesize` writes), and a table.

    python3 client/python/examples/campaign.py --server 127.0.0.1:50051 --out campaign/
"""

import argparse
from pathlib import Path

import numpy as np

import stimloop

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--server", default="127.0.0.1:50051")
parser.add_argument("--model", default="demo_population")
parser.add_argument("--steps", type=int, default=30)
parser.add_argument("--out", default="campaign")
args = parser.parse_args()

client = stimloop.Client(args.server, timeout=600)
model = client.model(args.model)
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)

# Campaign priority: a rig sharing the server is served first, between two of our steps.
rows = []
for k in range(model.num_outputs):
    for objective in ("max", "min"):
        result = client.synthesize(args.model, objective, output_index=k, steps=args.steps,
                                   seed=k, priority="campaign", encoding="png")
        stimulus = result.stimuli[0]
        stimulus.save(out / f"{args.model}_{objective}_{k}.png")
        rows.append((k, objective, stimulus.response, stimulus.outputs))

print(f"{'output':>6} {'objective':>9} {'response':>10}  all outputs")
for k, objective, response, outputs in rows:
    print(f"{k:>6} {objective:>9} {response:>10.4f}  {np.array2string(outputs, precision=3)}")

# Preferred beats suppressive for every output (a sanity check worth keeping in a notebook).
best = {(k, o): r for k, o, r, _ in rows}
assert all(best[k, "max"] > best[k, "min"] for k in range(model.num_outputs))
print(f"{len(rows)} stimuli with records in {out}/")
