"""Sequential methods against their floor: DGA (paper 04) and the MIA table (paper 01).

    python benchmarks/bench_sequential.py [--model resnet8|nib_vgg16|resnet18] [--batch 16]
        [--steps 30] [--mia-images 1000] [--mia-iterations 10] [--repeats 3] [--threads N]
        [--clock wall|cpu]

* DGA with N steps needs N + 1 forward+backward passes of the batch, one after the other
  (each step's input depends on the previous attribution). Its floor is N + 1 sequential
  input-gradient passes of the batch; the script prints DGA / floor (target <= 1.2) and DGA
  next to IG with N + 1 steps (batched, so IG can use bigger GEMMs).
* MIA for I iterations of GxSI on M images costs I gradient passes plus I + 1 forward passes;
  the script times the whole table for one method and prints it next to that floor.
Models have random weights (timing does not depend on them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_methods import CLOCKS, build_model, make_floor, time_interleaved  # noqa: E402

from attrlab import methods, metrics  # noqa: E402


def sequential_floor(model, x, t, passes: int):
    one = make_floor(model, x, t, x.shape[0])

    def floor():
        for _ in range(passes):
            one()
    return floor


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="resnet8")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--mia-images", type=int, default=1000)
    p.add_argument("--mia-iterations", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall clock, or CPU time of this process (steadier on a shared "
                        "machine; use with --threads 1)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, desc = build_model(args.model, args.size, args.seed)
    model.eval()
    for q in model.parameters():
        q.requires_grad_(False)
    torch.manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.size, args.size)
    t = torch.randint(0, 10, (args.batch,))
    n = args.steps
    dga = methods.get("dga", model, n_steps=n)
    ig = methods.get("ig", model, n_steps=n + 1)
    times, _ = time_interleaved({
        "dga": lambda: dga.attribute(x, t),
        "floor": sequential_floor(model, x, t, n + 1),
        "ig": lambda: ig.attribute(x, t),
    }, args.repeats, torch.device("cpu"), CLOCKS[args.clock])
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"model {desc}, batch {args.batch}, {torch.get_num_threads()} threads, clock "
          f"{args.clock}")
    print(f"DGA (N={n})            {med['dga']:.3f} s")
    print(f"floor ({n + 1} seq. passes) {med['floor']:.3f} s   DGA/floor = "
          f"{med['dga'] / med['floor']:.2f} (target <= 1.2)")
    print(f"IG ({n + 1} steps)        {med['ig']:.3f} s   DGA/IG = {med['dga'] / med['ig']:.2f}")

    m, iters = args.mia_images, args.mia_iterations
    xm = torch.randn(m, 3, args.size, args.size)
    tm = torch.randint(0, 10, (m,))
    mia = metrics.get("mia", iterations=iters, batch_size=500)
    gxsi = methods.get("gxsi", model)
    times, _ = time_interleaved({
        "mia": lambda: mia.curve(model, xm, tm, torch.zeros_like(xm), gxsi),
        "floor": sequential_floor(model, xm, tm, iters),
    }, 1, torch.device("cpu"), CLOCKS[args.clock])
    a, f = statistics.median(times["mia"]), statistics.median(times["floor"])
    print(f"MIA table, GxSI, {iters} iterations x {m} images: {a:.2f} s "
          f"(floor of {iters} gradient passes {f:.2f} s, ratio {a / f:.2f}; "
          f"x6 methods of Table 2 ~ {6 * a / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
