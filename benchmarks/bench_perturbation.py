#!/usr/bin/env python
"""Perturbation methods: time against their floor and against Captum, and RISE's memory.

Run from the repository root::

    python benchmarks/bench_perturbation.py                      # resnet8, 32 px, batch 4
    python benchmarks/bench_perturbation.py --model resnet18 --size 224 --batch 8 --threads 4
    python benchmarks/bench_perturbation.py --rise-memory-only   # 8,000 masks at 224 px

1. **Floor.** Every perturbation method runs once under a recorder of the model's calls
   (rows per call); its floor replays exactly those calls, forward only, on the plain model
   (``benchmarks/suite.py``). attrlab / floor is the cost of everything around the model
   (feature ids, samplers, masks, surrogate fits). Target <= 1.2.
2. **Captum.** Occlusion (same window, stride, baseline), LIME and KernelSHAP (same feature
   mask and sample count) against Captum's ``Occlusion``/``Lime``/``KernelShap`` on the same
   model, batch and targets; Captum's ``perturbations_per_eval`` is set so that both push the
   same rows per forward pass where Captum allows it (Captum's LIME and KernelSHAP explain
   one input at a time). Target <= 1.0.
3. **RISE memory.** In a fresh subprocess: peak resident memory (``ru_maxrss``) of RISE with
   8,000 masks on one 224 px image with a one-layer model, minus the process's resident
   memory before the call. Target < 1 GB (the authors' float64 masks alone: 3.2 GB).

Timings are medians over ``--repeats`` rounds after a warm-up, the compared calls in
alternating order. Results: a table on stdout and ``--json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from suite import CLOCKS, CallRecorder, build, make_floor, time_pair  # noqa: E402

from attrlab import methods  # noqa: E402

TARGET_FLOOR, TARGET_CAPTUM, TARGET_MEMORY_GB = 1.2, 1.0, 1.0


def settings(size: int, samples: int, masks: int, batch_rows: int) -> dict[str, dict]:
    window = max(2, size // 8)
    return {
        "occlusion": {"sliding_window_shapes": window, "strides": window // 2,
                      "internal_batch_size": batch_rows},
        "feature_ablation": {"feature_mask": 8, "internal_batch_size": batch_rows},
        "rise": {"n_masks": masks, "internal_batch_size": batch_rows},
        "lime": {"n_samples": samples, "feature_mask": 8, "internal_batch_size": batch_rows},
        "kernel_shap": {"n_samples": samples, "feature_mask": 8,
                        "internal_batch_size": batch_rows},
    }


def median(v: list[float]) -> float:
    return statistics.median(v)


def bench_floor(name, opts, model, x, y, repeats, clock):
    method = methods.get(name, model, **opts)
    gen = (lambda: {"generator": torch.Generator().manual_seed(0)}) if method.random else dict

    def run():
        return method.attribute(x, y, **gen())

    with CallRecorder(model) as rec:
        run()
    for p in model.parameters():
        p.requires_grad_(False)
    floor = make_floor(model, x, rec.calls)
    t = time_pair({"attrlab": run, "floor": floor}, repeats, clock)
    return {"method": name, "attrlab_s": median(t["attrlab"]), "floor_s": median(t["floor"]),
            "ratio": median(t["attrlab"]) / median(t["floor"]),
            "rows_per_sample": sum(n for n, _ in rec.calls) / x.shape[0],
            "calls": len(rec.calls)}


def bench_captum(name, opts, model, x, y, repeats, clock):
    import captum.attr as ca

    rows = opts["internal_batch_size"]
    n = x.shape[0]
    ours = methods.get(name, model, **opts)
    fm = _patch_mask(x, 8)  # the 8 x 8 patches attrlab's feature_mask=8 uses
    if name == "occlusion":
        win, stride = opts["sliding_window_shapes"], opts["strides"]
        occ = ca.Occlusion(model)

        def theirs():
            return occ.attribute(x, sliding_window_shapes=(x.shape[1], win, win),
                                 strides=stride, target=y,
                                 perturbations_per_eval=max(1, rows // n))
    else:
        alg = ca.Lime(model) if name == "lime" else ca.KernelShap(model)
        s = opts["n_samples"]

        def theirs():
            return torch.cat([alg.attribute(x[i:i + 1], target=y[i:i + 1], feature_mask=fm,
                                            n_samples=s, perturbations_per_eval=rows)
                              for i in range(n)])

    def mine():
        kw = {"generator": torch.Generator().manual_seed(0)} if ours.random else {}
        return ours.attribute(x, y, **kw)

    mine(), theirs()
    t = time_pair({"attrlab": mine, "captum": theirs}, repeats, clock)
    return {"method": name, "attrlab_s": median(t["attrlab"]), "captum_s": median(t["captum"]),
            "ratio": median(t["attrlab"]) / median(t["captum"])}


def _patch_mask(x, grid):
    from attrlab.core.perturbation import patch_ids

    return patch_ids(tuple(x.shape[1:]), grid)


RISE_CHILD = r"""
import resource, sys, torch
sys.path.insert(0, sys.argv[1])
from attrlab import methods
torch.set_num_threads(int(sys.argv[3]))
model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=4), torch.nn.ReLU(),
                            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                            torch.nn.Linear(8, 10)).eval()
x = torch.randn(1, 3, 224, 224)
model(x)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rise = methods.get("rise", model, n_masks=int(sys.argv[2]), internal_batch_size=256)
out = rise.attribute(x, 0, generator=torch.Generator().manual_seed(0))
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(before, after, float(out.sum()))
"""


def rise_memory(masks: int, threads: int) -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", RISE_CHILD, src, str(masks), str(threads)],
                         capture_output=True, text=True, check=True).stdout.split()
    before, after = int(out[0]), int(out[1])  # KiB on Linux
    return {"masks": masks, "size": 224, "peak_rss_gb": after / 2 ** 20,
            "peak_increase_gb": (after - before) / 2 ** 20, "wall_s": time.perf_counter() - t0,
            "authors_float64_masks_gb": masks * 224 * 224 * 8 / 2 ** 30}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="resnet8", choices=("digits", "resnet8", "resnet18"))
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--samples", type=int, default=200, help="LIME/KernelSHAP samples")
    ap.add_argument("--masks", type=int, default=400, help="RISE masks (timing)")
    ap.add_argument("--rows", type=int, default=64, help="rows per forward pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", default="cpu", choices=tuple(CLOCKS))
    ap.add_argument("--rise-masks", type=int, default=8000, help="RISE masks (memory; 0: skip)")
    ap.add_argument("--rise-memory-only", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    report = {"settings": vars(args), "machine": platform.platform(),
              "torch": torch.__version__, "load_before": os.getloadavg()}
    if not args.rise_memory_only:
        model, x, y, _, desc = build(args.model, args.size, 0)
        x, y = x[:args.batch], y[:args.batch]
        report["model"] = desc
        opts = settings(x.shape[-1], args.samples, args.masks, args.rows)
        clock = CLOCKS[args.clock]
        report["floor"] = [bench_floor(k, v, model, x, y, args.repeats, clock)
                           for k, v in opts.items()]
        report["captum"] = [bench_captum(k, opts[k], model, x, y, args.repeats, clock)
                            for k in ("occlusion", "lime", "kernel_shap")]
    if args.rise_masks:
        report["rise_memory"] = rise_memory(args.rise_masks, args.threads)
    report["load_after"] = os.getloadavg()
    if "floor" in report:
        print(f"{report['model']}, batch {args.batch}, {args.rows} rows/pass, clock "
              f"{args.clock}, {args.threads} thread(s), {args.repeats} rounds")
        print("| method | rows/sample | attrlab s | floor s | attrlab/floor (<= 1.2) |")
        print("| --- | --- | --- | --- | --- |")
        for r in report["floor"]:
            print(f"| {r['method']} | {r['rows_per_sample']:g} | {r['attrlab_s']:.3f} | "
                  f"{r['floor_s']:.3f} | {r['ratio']:.2f} |")
        print("\n| method | attrlab s | Captum s | attrlab/Captum (<= 1.0) |")
        print("| --- | --- | --- | --- |")
        for r in report["captum"]:
            print(f"| {r['method']} | {r['attrlab_s']:.3f} | {r['captum_s']:.3f} | "
                  f"{r['ratio']:.3f} |")
    m = report.get("rise_memory")
    if m:
        print(f"\nRISE {m['masks']} masks at 224 px: peak RSS {m['peak_rss_gb']:.3f} GB, increase "
              f"during the call {m['peak_increase_gb']:.3f} GB (< {TARGET_MEMORY_GB} GB; the "
              f"authors' float64 masks alone: {m['authors_float64_masks_gb']:.2f} GB), "
              f"{m['wall_s']:.1f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
