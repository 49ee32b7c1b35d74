#!/usr/bin/env python
"""The performance suite: every registered attrlab method against its own floor.

Run from the repository root::

    python -m benchmarks                      # shipped digits CNN, batch 16, 1 thread
    python -m benchmarks --model resnet8 --size 32 --only ig,deeplift --repeats 5

A method's **floor** is the model work it cannot avoid, found by watching it rather than by
trusting its metadata: while the method runs once, a hook on the model records every call
(rows in the batch, and whether the output is part of an autograd graph). The floor replays
exactly those calls on the plain model (parameters ``requires_grad=False``, as attrlab's model
guard sets them): a forward pass of the same rows and, for calls inside a graph, one
``torch.autograd.grad`` of the summed outputs w.r.t. the input. attrlab/floor is then the
overhead of everything the method adds around the model (sampling, masks, optimiser steps,
surrogate fits, bookkeeping); it is honest for every family, including forward-only
perturbation methods (whose floor has no backward) and methods that stop the backward early
(Grad-CAM, whose ratio can be below 1).

Methods that need data are fitted first, on the evaluation batch's data set (not timed).
Timings are medians over ``--repeats`` rounds after one warm-up; within a round the method
and its floor run back to back in alternating order. Writes ``--out``/suite.json (settings,
machine, load, every sample) and ``--out``/suite.md (the table).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

try:  # run from a checkout without installing
    import attrlab
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import attrlab

from attrlab import methods

CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
TARGET_FLOOR = 1.2


class CallRecorder:
    """Records the top-level calls of ``model``: (rows, in an autograd graph) per call."""

    def __init__(self, model: nn.Module) -> None:
        self.model, self.calls = model, []

    def _hook(self, _module: nn.Module, args: tuple, output: Any) -> None:
        x = args[0] if args else None
        out = output[0] if isinstance(output, (tuple, list)) else output
        rows = int(x.shape[0]) if isinstance(x, Tensor) and x.dim() else 0
        self.calls.append((rows, bool(isinstance(out, Tensor) and out.requires_grad)))

    def __enter__(self) -> CallRecorder:
        self.handle = self.model.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.remove()


def make_floor(model: nn.Module, x: Tensor, calls: list[tuple[int, bool]]
               ) -> Callable[[], None]:
    """Replays ``calls`` on ``model`` (parameters frozen): per call a forward of that many rows
    (``x`` tiled) and, for calls in a graph, the input gradient of the summed outputs."""
    def rows_of(n: int) -> Tensor:
        reps = -(-n // x.shape[0])
        return x.repeat((reps,) + (1,) * (x.dim() - 1))[:n].contiguous()

    batches = [(rows_of(n), grad) for n, grad in calls if n]

    def floor() -> None:
        for xb, grad in batches:
            if grad:
                xg = xb.detach().requires_grad_(True)
                with torch.enable_grad():
                    torch.autograd.grad(model(xg).sum(), xg)
            else:
                with torch.no_grad():
                    model(xb)

    return floor


def build(name: str, size: int, seed: int) -> tuple[nn.Module, Tensor, Tensor, Any, str]:
    """(model, x, targets, fit data, description) for ``--model``."""
    if name == "digits":
        from attrlab.data import digits
        from attrlab.models import load_checkpoint

        model, _ = load_checkpoint("digits_nib_cnn")
        test = digits("test")
        x, y = test.tensors(range(16))
        return model.eval(), x, y, digits("train"), "shipped digits_nib_cnn (8 px digits)"
    torch.manual_seed(seed)
    if name == "resnet8":
        from attrlab.models import resnet8

        model = resnet8(num_classes=10)
    elif name == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(num_classes=10)
    else:
        raise SystemExit(f"unknown model {name!r}: digits, resnet8 or resnet18")
    model.train()
    with torch.no_grad():  # realistic BatchNorm statistics for a random-init model
        for _ in range(3):
            model(torch.randn(32, 3, size, size))
    x = torch.randn(16, 3, size, size)
    fit_data = torch.randn(32, 3, size, size)
    with torch.no_grad():
        y = model.eval()(x).argmax(1)
    return model, x, y, fit_data, f"{name} random init, {size} px"


def time_pair(fns: dict[str, Callable[[], Any]], repeats: int,
              clock: Callable[[], float]) -> dict[str, list[float]]:
    """``repeats`` rounds of every fn, the order alternating per round."""
    keys, out = list(fns), {k: [] for k in fns}
    for r in range(repeats):
        for key in keys[r % 2:] + keys[: r % 2]:
            t0 = clock()
            fns[key]()
            out[key].append(clock() - t0)
    return out


def bench_method(name: str, model: nn.Module, x: Tensor, y: Tensor, fit_data: Any,
                 repeats: int, clock: Callable[[], float], seed: int) -> dict[str, Any]:
    cls = methods.method_class(name)
    method = methods.get(name, model)
    if cls.needs_data and not method.fitted:
        method.fit(fit_data, generator=torch.Generator().manual_seed(seed))

    def run() -> Any:
        return method.attribute(x, target=y, **method.seeded(seed))

    with CallRecorder(model) as rec:  # the warm-up call, recorded
        run()
    frozen = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        floor = make_floor(model, x, rec.calls)
        samples = time_pair({"method": run, "floor": floor}, repeats, clock)
    finally:
        for p, flag in zip(model.parameters(), frozen):
            p.requires_grad_(flag)
    med = {k: statistics.median(v) for k, v in samples.items()}
    rows = sum(n for n, _ in rec.calls)
    return {"method": name, "method_s": med["method"], "floor_s": med["floor"],
            "ratio": med["method"] / med["floor"] if med["floor"] else None,
            "calls": len(rec.calls), "rows_per_sample": rows / x.shape[0],
            "backward_calls": sum(g for _, g in rec.calls),
            # input-size dependent costs (occlusion, feature ablation) at this input's shape
            "cost_at_defaults": cls.cost(sample_shape=tuple(x.shape[1:])),
            "samples_s": samples}


def markdown(rows: list[dict[str, Any]], header: dict[str, Any]) -> str:
    lines = [f"# attrlab performance suite ({header['when']})", "",
             f"model: {header['model']}; batch {header['batch']}; threads {header['threads']}; "
             f"clock {header['clock']}; {header['repeats']} rounds (median, 1 warm-up); "
             f"load average before {header['load_before']} after {header['load_after']} on "
             f"{header['cpus']} CPUs; {header['machine']}; torch {header['torch']}", "",
             "| method | method s | floor s | method/floor | model calls | rows/sample "
             "| calls with backward | cost (registry) |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | error: {r['error']} | | | | | | |")
            continue
        miss = " (miss)" if r["ratio"] and r["ratio"] > TARGET_FLOOR else ""
        lines.append(f"| {r['method']} | {r['method_s']:.4f} | {r['floor_s']:.4f} | "
                     f"{r['ratio']:.2f}{miss} | {r['calls']} | {r['rows_per_sample']:g} | "
                     f"{r['backward_calls']} | {r['cost_at_defaults']:g} |")
    lines += ["", f"floor = the method's own model calls replayed on the plain model (see "
              f"benchmarks/suite.py); target method/floor <= {TARGET_FLOOR}. On a model this "
              "small a fixed cost per call (checks, hooks, model guard) weighs more than on a "
              "real one; run --model resnet8 or resnet18 for representative ratios. Captum "
              "is timed against attrlab by bench_methods.py."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="digits", help="digits (shipped CNN), resnet8, resnet18")
    p.add_argument("--size", type=int, default=32, help="input size of random-init models")
    p.add_argument("--only", help="comma-separated registry names (default: every method)")
    p.add_argument("--skip", default="", help="comma-separated registry names to leave out")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results", help="folder for suite.json/.md")
    args = p.parse_args(argv)

    torch.set_num_threads(args.threads)
    model, x, y, fit_data, desc = build(args.model, args.size, args.seed)
    names = args.only.split(",") if args.only else methods.available()
    names = [n for n in names if n not in set(args.skip.split(","))]
    unknown = sorted(set(names) - set(methods.available()))
    if unknown:
        raise SystemExit(f"unknown method(s) {', '.join(unknown)}; available: "
                         f"{', '.join(methods.available())}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    header = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "model": desc,
              "batch": int(x.shape[0]), "threads": torch.get_num_threads(),
              "clock": args.clock, "repeats": args.repeats,
              "load_before": f"{load[0]:.2f}", "cpus": os.cpu_count(),
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "torch": torch.__version__, "attrlab": getattr(attrlab, "__version__", "?")}
    rows = []
    for name in names:
        try:
            row = bench_method(name, model, x, y, fit_data, args.repeats, CLOCKS[args.clock],
                               args.seed)
        except Exception as exc:  # report it and go on with the other methods
            row = {"method": name, "error": f"{type(exc).__name__}: {str(exc)[:160]}"}
        rows.append(row)
        print(f"{name}: " + (row.get("error") or f"{row['ratio']:.2f}x its floor "
                             f"({row['method_s']:.4f} s)"), flush=True)
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    header["load_after"] = f"{load[0]:.2f}"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "suite.json").write_text(json.dumps({"settings": header | vars(args), "rows": rows},
                                               indent=2))
    (out / "suite.md").write_text(markdown(rows, header))
    print(f"wrote {out / 'suite.json'} and {out / 'suite.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
