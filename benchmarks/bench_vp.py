"""Paper 05's speed claims as ratios, measured side by side in one process.

    python benchmarks/bench_vp.py [--batch 64] [--repeats 5] [--threads N] [--clock wall|cpu]
        [--device cpu] [--steps 5] [--json FILE]

* explanation time per image (batch of one): VP (the shipped MNIST explainer, one forward
  pass) against InputGrad (one forward+backward of the MNIST CNN: the floor of any gradient
  method) and every optimisation / sampling baseline the registry holds (MP, RISE, EP, AP
  under their registry names); the paper claims VP up to 1,000x faster than MP/RISE/EP/AP;
* VP training: seconds per step (batch ``--batch``, m = 2, 50 Sinkhorn iterations as in the
  reproduction) and the implied seconds per MNIST epoch (60,000 images);
* SOFT top-k forward+backward against a plain ``torch.sort`` of the same (batch, 196) scores
  (m = 2 on MNIST) and against ``torch.topk``.

The MNIST CNN is the shipped checkpoint; inputs are random (timing does not depend on them).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from bench_methods import CLOCKS, time_interleaved  # noqa: E402

from attrlab import methods  # noqa: E402
from attrlab.core.soft_topk import soft_topk  # noqa: E402
from attrlab.experiments.reproduce.vp import EXPLAINER, LEARNED, OTHERS, SHIPPED  # noqa: E402
from attrlab.models import load_checkpoint  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--steps", type=int, default=5, help="VP training steps timed")
    p.add_argument("--threads", type=int)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall")
    p.add_argument("--device", default="cpu")
    p.add_argument("--json")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    clock = CLOCKS[args.clock]
    model, _ = load_checkpoint("mnist_cnn")
    model = model.to(device)
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(1, 1, 28, 28, generator=g).to(device)
    t1 = torch.tensor([3], device=device)

    state = torch.load(SHIPPED, weights_only=True)
    vp = methods.get("vp", model).load_state_dict(state["vp"])
    for net in vp.explainers.values():
        net.to(device)
    fns = {"vp": lambda: vp.attribute(x1, t1),
           "inputgrad": lambda: methods.get("saliency", model).attribute(x1, t1)}
    for label, names in OTHERS.items():
        name = next((n for n in names if n in methods.available()), None)
        if name is not None:
            other = methods.get(name, model)
            fns[label.lower()] = lambda other=other: other.attribute(x1, t1)
    times, _ = time_interleaved(fns, args.repeats, device, clock)
    med = {k: statistics.median(v) for k, v in times.items()}
    print("explanation, one image (median s; ratio = method / VP):")
    for k, v in med.items():
        print(f"  {k:10s} {v:.5f}  {v / med['vp']:8.1f}x")

    # training: seconds per step
    xb = torch.randn(args.batch, 1, 28, 28, generator=g).to(device)
    fit = methods.get("vp", model, max_steps=args.steps, progress=False,
                      **{**EXPLAINER, **LEARNED["vp"], "batch_size": args.batch})
    start = clock()
    fit.fit(xb.repeat(args.steps, 1, 1, 1))
    per_step = (clock() - start) / args.steps
    print(f"VP training: {per_step:.4f} s/step at batch {args.batch} -> "
          f"{per_step * 60000 / args.batch:.0f} s per MNIST epoch")

    # SOFT top-k vs sort / topk
    scores = torch.randn(args.batch, 196, generator=g, device=device)

    def soft():
        s = scores.clone().requires_grad_(True)
        soft_topk(s, 0.3 * 196, n_iter=LEARNED["vp"]["topk_iters"]).sum().backward()

    sort_times, _ = time_interleaved({"soft_topk_fwd_bwd": soft,
                                      "sort": lambda: torch.sort(scores, dim=1),
                                      "topk": lambda: torch.topk(scores, 59, dim=1)},
                                     args.repeats, device, clock, min_time=0.2)
    sm = {k: statistics.median(v) for k, v in sort_times.items()}
    print(f"SOFT top-k fwd+bwd ({LEARNED['vp']['topk_iters']} iterations): "
          f"{sm['soft_topk_fwd_bwd'] / sm['sort']:.0f}x sort, "
          f"{sm['soft_topk_fwd_bwd'] / sm['topk']:.0f}x topk")
    if args.json:
        Path(args.json).write_text(json.dumps({"explain": med, "train_step": per_step,
                                               "soft_topk": sm, "args": vars(args)}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
