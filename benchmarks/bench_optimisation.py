"""Meaningful and Extremal Perturbation: time per image, batched against one-by-one and
against the forward+backward floor.

    python benchmarks/bench_optimisation.py [--model resnet8|nib_vgg16|resnet18]
        [--sizes 32,224] [--batch 8] [--iterations 10] [--areas 0.1] [--repeats 3]
        [--threads N] [--clock wall|cpu] [--json FILE]

For every image size the script times, on the same model, images and targets:

* ``batched``: one ``attribute`` call on the whole batch (every image its own mask, all
  optimised together);
* ``one-by-one``: ``attribute`` on each image in turn (what TorchRay's EP does);
* ``floor``: ``iterations`` forward+backward passes of the rows the method pushes per step
  (the batch for MP, batch x len(areas) for EP), input gradients only.

It prints time per image and the ratios one-by-one / batched (the gain of batching) and
batched / floor (the overhead of the mask machinery: blur pyramid, smooth-mask generator,
sort). Small iteration counts are enough: every iteration costs the same. Models have random
weights (fixed seed); timing does not depend on them.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_methods import CLOCKS, build_model, make_floor, time_interleaved  # noqa: E402

from attrlab import methods  # noqa: E402


def sequential_floor(model, x, t, rows: int, passes: int):
    one = make_floor(model, x, t, rows)

    def floor():
        for _ in range(passes):
            one()
    return floor


def configs(size: int, iterations: int, areas: tuple[float, ...]) -> dict[str, dict]:
    """MP and EP with their defaults but ``iterations``; EP's parameter grid keeps its 32x32
    at 224 px (step 7) and is 8x8 at 32 px (step 4, sigma 12)."""
    ep = {"iterations": iterations, "areas": areas}
    if size < 224:
        ep.update(step=4, sigma=12.0)
    return {"meaningful_perturbation": {"iterations": iterations},
            "extremal_perturbation": ep}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet8")
    p.add_argument("--sizes", default="32,224")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--areas", default="0.1")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    areas = tuple(float(a) for a in args.areas.split(","))
    rows_out = []
    print(f"{args.model}, batch {args.batch}, {args.iterations} iterations, "
          f"{torch.get_num_threads()} threads, clock {args.clock}")
    print("| method | size | batched s/img | one-by-one s/img | one-by-one / batched | "
          "batched / floor |")
    print("| --- | --- | --- | --- | --- | --- |")
    for size in (int(s) for s in args.sizes.split(",")):
        model, desc = build_model(args.model, size, args.seed)
        for q in model.parameters():
            q.requires_grad_(False)
        g = torch.Generator().manual_seed(args.seed)
        x = torch.randn(args.batch, 3, size, size, generator=g)
        t = torch.randint(0, 10, (args.batch,), generator=g)
        for name, opts in configs(size, args.iterations, areas).items():
            m = methods.get(name, model, **opts)
            rows = args.batch * (len(areas) if name == "extremal_perturbation" else 1)
            times, _ = time_interleaved({
                "batched": lambda: m.attribute(x, t),
                "single": lambda: [m.attribute(x[i:i + 1], t[i:i + 1])
                                   for i in range(args.batch)],
                "floor": sequential_floor(model, x, t, rows, args.iterations),
            }, args.repeats, torch.device("cpu"), CLOCKS[args.clock])
            med = {k: statistics.median(v) for k, v in times.items()}
            row = {"method": name, "size": size, "model": desc, "batch": args.batch,
                   "iterations": args.iterations, "areas": areas, "times": times,
                   "batched_per_image": med["batched"] / args.batch,
                   "single_per_image": med["single"] / args.batch,
                   "single_over_batched": med["single"] / med["batched"],
                   "batched_over_floor": med["batched"] / med["floor"]}
            rows_out.append(row)
            print(f"| {name} | {size} | {row['batched_per_image']:.3f} | "
                  f"{row['single_per_image']:.3f} | {row['single_over_batched']:.2f} | "
                  f"{row['batched_over_floor']:.2f} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows_out},
                                              indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
