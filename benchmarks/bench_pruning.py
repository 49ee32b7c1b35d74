#!/usr/bin/env python
"""PruneGrad and PrunePGD (paper 03) against their forward+backward floor.

    python benchmarks/bench_pruning.py --model resnet8 --size 32 --repeats 5

After calibration (``fit``, not timed) PruneGrad makes two forward+backward passes (the
importance scores, then the gradient of the pruned network) and PrunePGD 1 + iterations; the
floor replays exactly the model calls the method made (:func:`benchmarks.suite.make_floor`),
so method/floor is the cost of the masks (the TorchFunctionMode, the per-sample global
threshold with ``kthvalue``, the PGD projection). Target: <= 1.2. Also the iterative
calibration variant (one extra forward pass per 1 % step). Writes ``--out``/pruning.json and
pruning.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from attrlab import methods
from benchmarks.suite import (
    CLOCKS,
    TARGET_FLOOR,
    CallRecorder,
    build,
    make_floor,
    time_pair,
)

VARIANTS = {"prunegrad": ("prunegrad", {}), "prunepgd": ("prunepgd", {}),
            "prunepgd (5 iterations)": ("prunepgd", {"iterations": 5}),
            "prunegrad (iterative, 1 %)": ("prunegrad", {"calibration": "iterative"})}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet8", help="resnet8 or resnet18 (random init)")
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model, x, y, fit_data, desc = build(args.model, args.size, 0)
    model, x, y = model.to(args.device).eval(), x.to(args.device), y.to(args.device)
    fitted = methods.get("prunegrad", model).fit(fit_data.to(args.device)).state_dict()
    clock = CLOCKS[args.clock]
    if args.device != "cpu":
        def clock() -> float:
            torch.cuda.synchronize()
            return time.perf_counter()
    rows = []
    for label, (name, opts) in VARIANTS.items():
        m = methods.get(name, model, **opts)
        if not opts.get("calibration"):
            m.load_state_dict(fitted)

        def run(m=m):
            return m.attribute(x, target=y)

        with CallRecorder(model) as rec:
            run()
        for prm in model.parameters():
            prm.requires_grad_(False)
        samples = time_pair({"method": run, "floor": make_floor(model, x, rec.calls)},
                            args.repeats, clock)
        med = {k: statistics.median(v) for k, v in samples.items()}
        rows.append({"variant": label, "method_s": med["method"], "floor_s": med["floor"],
                     "ratio": med["method"] / med["floor"], "calls": len(rec.calls),
                     "backward_calls": sum(g for _, g in rec.calls),
                     "cost": methods.method_class(name).cost(**opts), "samples_s": samples})
        print(f"{label}: {rows[-1]['ratio']:.2f}x its floor", flush=True)
    head = (f"{desc}; batch {x.shape[0]}; device {args.device}; threads "
            f"{torch.get_num_threads()}; clock {args.clock}; {args.repeats} rounds (median); "
            f"pruned {fitted['percentage']:.1f} % (fit on {fit_data.shape[0]} noise images)")
    md = ["# PruneGrad / PrunePGD against their floor", "", head, "",
          ("| variant | method s | floor s | method/floor | model calls | with backward | "
           "cost (registry) |"), "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    md += [f"| {r['variant']} | {r['method_s']:.4f} | {r['floor_s']:.4f} | {r['ratio']:.2f}"
           f"{' (miss)' if r['ratio'] > TARGET_FLOOR else ''} | {r['calls']} | "
           f"{r['backward_calls']} | {r['cost']:g} |" for r in rows]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pruning.json").write_text(json.dumps({"settings": vars(args), "header": head,
                                                  "rows": rows}, indent=2))
    (out / "pruning.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
