"""IBA and InputIBA timings: batched vs one image at a time, against a forward+backward floor,
and InputIBA's time per image for each stage (paper 02 reports about 24 s per 224 px image on
an RTX 3090, one image at a time).

    python benchmarks/bench_information.py --images 8 --threads 1 --clock cpu --json out.json

Model: the shipped CIFAR-10 VGG16 with layer biases (``cifar10_vgg16_lb``), bottleneck at its
conv4_1 counterpart (``features.24``, 4 x 4 at 32 px); statistics fitted on CIFAR-10 train
images (``--fit-samples``), or on noise images when the data set is not available.
The floor of IBA is ``steps`` forward passes of the N * copies rows with a backward pass to
the input (IBA's backward stops at the bottleneck, so this floor is generous to the floor).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from attrlab import methods
from attrlab.core.bottleneck import capacity_map, layer_output
from attrlab.methods.information.iba import feature_bottleneck
from attrlab.methods.information.input_iba import input_bottleneck
from attrlab.methods.information.wgan import Draws, fit_input_mask
from attrlab.models import load_checkpoint


def data(n_images: int, n_fit: int):
    from attrlab.data import load_dataset

    try:
        test, train = load_dataset("cifar10", "test"), load_dataset("cifar10", "train")
        x, _ = test.tensors(torch.arange(n_images))
        return x, train, "CIFAR-10"
    except (FileNotFoundError, ValueError):
        g = torch.Generator().manual_seed(0)
        return torch.randn(n_images, 3, 32, 32, generator=g), \
            torch.randn(n_fit, 3, 32, 32, generator=g), "noise images"


CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
CLOCK = CLOCKS["cpu"]


def clock(fn):
    t0 = CLOCK()
    out = fn()
    return CLOCK() - t0, out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--fit-samples", type=int, default=1000)
    p.add_argument("--layer", default="features.24")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                   help="process CPU time (default; robust on a shared machine) or wall time")
    p.add_argument("--json")
    args = p.parse_args(argv)
    global CLOCK
    CLOCK = CLOCKS[args.clock]
    torch.set_num_threads(args.threads)
    model, _ = load_checkpoint("cifar10_vgg16_lb")
    model.eval()
    x, fit_data, source = data(args.images, args.fit_samples)
    with torch.no_grad():
        y = model(x).argmax(1)
    out = {"model": "cifar10_vgg16_lb", "layer": args.layer, "images": args.images,
           "threads": args.threads, "clock": args.clock, "data": source, "machine": platform.processor() or
           platform.machine(), "torch": torch.__version__}

    iba = methods.get("iba", model, layer=args.layer, estimation_samples=args.fit_samples)
    out["fit_s"], _ = clock(lambda: iba.fit(fit_data))
    gen = lambda: torch.Generator().manual_seed(0)
    iba.attribute(x[:1], target=y[:1], generator=gen())  # warm-up
    out["iba_batched_s"], _ = clock(lambda: iba.attribute(x, target=y, generator=gen()))
    out["iba_one_by_one_s"], _ = clock(lambda: [iba.attribute(x[i:i + 1], target=y[i:i + 1],
                                                              generator=gen())
                                                for i in range(len(x))])
    rows = x.repeat_interleave(10, 0)

    def floor():
        for _ in range(10):
            r = rows.clone().requires_grad_(True)
            torch.autograd.grad(model(r).logsumexp(1).sum(), r)

    for prm in model.parameters():
        prm.requires_grad_(False)
    out["iba_floor_s"], _ = clock(floor)

    # InputIBA, stage by stage, at the method's defaults
    ii = methods.get("input_iba", model, layer=args.layer).load_state_dict(iba.state_dict())
    opts = ii.defaults
    draws = Draws(len(x), gen(), x.device, x.dtype)
    shape = tuple(ii.statistics.mean.shape)
    with ii.guard():
        t_feat, (_, cap) = clock(lambda: feature_bottleneck(
            ii, ii.layer, ii.statistics, x, y, (), beta=opts["feature_beta"],
            steps=opts["feature_steps"], lr=opts["feature_lr"], copies=opts["copies"],
            alpha_init=opts["alpha_init"], sigma=0.0, min_std=opts["min_std"],
            active_threshold=opts["active_threshold"],
            noise=lambda s: draws.normal(opts["copies"], *shape).flatten(0, 1)))
        with torch.no_grad():
            clean = layer_output(ii.forward, ii.layer, x)
        t_gan, lam_g = clock(lambda: fit_input_mask(
            lambda z: layer_output(ii.forward, ii.layer, z), x, clean, cap,
            capacity_map(cap, x.shape[2:]).expand_as(x), draws))
        t_input, _ = clock(lambda: input_bottleneck(
            ii, x, y, (), lam_g, draws, beta=opts["beta"], steps=opts["steps"], lr=opts["lr"],
            copies=opts["copies"], alpha_init=opts["alpha_init"], sigma=opts["sigma"]))
    n = len(x)
    out["input_iba_per_image_s"] = {"feature_iba": t_feat / n, "gan": t_gan / n,
                                    "input_iba": t_input / n,
                                    "total": (t_feat + t_gan + t_input) / n}
    out["iba_ratio_to_floor"] = out["iba_batched_s"] / out["iba_floor_s"]
    out["iba_batched_speedup"] = out["iba_one_by_one_s"] / out["iba_batched_s"]
    print(json.dumps(out, indent=2))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
