#!/usr/bin/env python
"""Time attrlab attribution methods against Captum and against the autograd "floor".

Run from the repository root (with attrlab installed or ``src`` importable)::

    python benchmarks/bench_methods.py --model resnet18 --batch 16 --size 32 --repeats 5

For every attrlab method that Captum also has, the same model, batch, targets and settings go
through both libraries in the same process. The "floor" is what the method cannot avoid: the
same number of rows pushed through the plain model as ONE batched forward pass plus one
``torch.autograd.grad`` of the summed target logits w.r.t. the input, with every parameter's
``requires_grad`` set to False (as attrlab's ``model_guard`` does). Each timing is the median
of ``--repeats`` runs after one warm-up run; within a repeat the attrlab / Captum / floor calls
are made back to back in a rotating order so that slow drifts of the machine hit all three.

See benchmarks/README.md for the meaning of every column.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor, nn

try:  # run from a checkout without installing
    import attrlab  # noqa: F401
except ImportError:  # pragma: no cover
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    import attrlab  # noqa: F401

import captum
from captum.attr import (
    DeepLift,
    DeepLiftShap,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerGradCam,
    NoiseTunnel,
    Saliency,
)

from attrlab import methods

TARGET_CAPTUM = 1.0  # attrlab / captum must be <= this
TARGET_FLOOR = 1.2  # attrlab / floor must be <= this
NUM_CLASSES = 10
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------

def _attrlab_models():
    try:
        from attrlab import models as m  # written by another helper; may not exist yet
    except ImportError as exc:
        raise SystemExit(f"attrlab.models is not importable yet ({exc}); use --model resnet18")
    return m


def build_model(name: str, size: int, seed: int) -> tuple[nn.Module, str]:
    """The model in eval mode (random init, BatchNorm statistics warmed) and its description."""
    torch.manual_seed(seed)
    if name == "resnet18":
        import torchvision

        model = torchvision.models.resnet18(num_classes=NUM_CLASSES)
        desc = "torchvision resnet18(num_classes=10)"
    elif name == "resnet8":
        model = _attrlab_models().resnet8(num_classes=NUM_CLASSES)
        desc = "attrlab.models.resnet8(num_classes=10)"
    elif name == "nib_vgg16":
        model = _attrlab_models().nib_vgg("16", width=0.25)
        desc = 'attrlab.models.nib_vgg("16", width=0.25)'
    else:
        raise SystemExit(f"unknown model {name!r}")
    # Random-init BatchNorm has running stats (0, 1); a few train-mode passes on random data
    # give realistic activation scales. Weights are not changed.
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 3, size, size))
    return model.eval(), desc + ", random init, eval (BN stats from 3 train-mode passes)"


def gradcam_layer_name(model: nn.Module, override: str | None) -> str:
    if override:
        return override
    names = dict(model.named_children())
    for name in ("layer4", "layer3"):
        if name in names:
            return name
    from attrlab.methods.cam.gradcam import last_conv_name

    return last_conv_name(model)


class _PerCallSiteReLU(nn.Module):
    """Stands for a ReLU module that the original forward calls ``k`` times per pass: the
    ``i``-th call of a pass goes to its own ``nn.ReLU`` child ``i``. Same function, but
    Captum's DeepLift (which stores each ReLU module's input/output on the module) sees one
    module per call site."""

    def __init__(self, relu: nn.ReLU, k: int) -> None:
        super().__init__()
        self.sites = nn.ModuleList(nn.ReLU(inplace=relu.inplace) for _ in range(k))
        self.i = 0

    def forward(self, x: Tensor) -> Tensor:
        out = self.sites[self.i](x)
        self.i = (self.i + 1) % len(self.sites)
        return out


def distinct_relu_copy(model: nn.Module, example: Tensor) -> tuple[nn.Module, int]:
    """A functionally identical deep copy of ``model`` in which no ``nn.ReLU`` module is called
    more than once per forward pass; returns (copy, number of reused ReLU modules replaced)."""
    counts: dict[str, int] = {}
    handles = []
    for name, m in model.named_modules():
        if type(m) is nn.ReLU:
            counts[name] = 0

            def pre(_m, _inp, name=name):
                counts[name] += 1

            handles.append(m.register_forward_pre_hook(pre))
    try:
        with torch.no_grad():
            model(example[:2])
    finally:
        for h in handles:
            h.remove()
    reused = {n: k for n, k in counts.items() if k > 1}
    if not reused:
        return model, 0
    clone = copy.deepcopy(model)
    for name, k in reused.items():
        parent_name, _, attr = name.rpartition(".")
        parent = clone.get_submodule(parent_name) if parent_name else clone
        setattr(parent, attr, _PerCallSiteReLU(getattr(parent, attr), k))
    with torch.no_grad():
        if not torch.equal(clone(example), model(example)):
            raise RuntimeError("distinct-ReLU copy is not functionally identical")
    return clone, len(reused)


# --------------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------------

def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int, device: torch.device,
                     clock: Callable[[], float] = time.perf_counter, min_time: float = 0.0,
                     ) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """One warm-up call of each fn (its result is returned), then ``repeats`` rounds in which
    every fn runs once, in an order rotated per round. With ``min_time`` > 0 the number of
    rounds grows until the slowest fn (judged by its warm-up) gets about ``min_time`` seconds.
    Returns (all timings in s, results)."""
    results, warm = {}, []
    for key, fn in fns.items():
        t0 = clock()
        results[key] = fn()
        _sync(device)
        warm.append(clock() - t0)
    if min_time > 0:  # fast methods: more rounds, so that the medians are not just noise
        repeats = max(repeats, min(1000, math.ceil(min_time / max(max(warm), 1e-6))))
    times: dict[str, list[float]] = {k: [] for k in fns}
    keys = list(fns)
    for r in range(repeats):
        order = keys[r % len(keys):] + keys[: r % len(keys)]
        for key in order:
            _sync(device)
            t0 = clock()
            fns[key]()
            _sync(device)
            times[key].append(clock() - t0)
    return times, results


def _labelled(label: str, fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` whose exceptions name the library that raised them."""
    def run():
        try:
            return fn()
        except Exception as exc:
            raise RuntimeError(f"{label} failed: {type(exc).__name__}: {exc}") from exc
    return run


def make_floor(model: nn.Module, x: Tensor, t: Tensor, rows: int) -> Callable[[], Tensor]:
    """One forward + input-gradient backward of ``rows`` rows (x repeated) through ``model``
    (whose parameters must already have requires_grad=False)."""
    reps = -(-rows // x.shape[0])
    xr = x.repeat((reps,) + (1,) * (x.dim() - 1))[:rows].contiguous()
    tr = t.repeat(reps)[:rows].view(-1, 1)

    def floor() -> Tensor:
        xg = xr.detach().requires_grad_(True)
        with torch.enable_grad():
            out = model(xg)
            (g,) = torch.autograd.grad(out.gather(1, tr).sum(), xg)
        return g

    return floor


# --------------------------------------------------------------------------------------------
# the cases
# --------------------------------------------------------------------------------------------

@dataclass
class Case:
    name: str
    attrlab: Callable[[], Tensor]
    captum: Callable[[], Tensor]
    rows: int  # rows of the floor (total rows the method must push through the model)
    passes: str  # how the rows come about, for the notes
    notes: list[str] = field(default_factory=list)
    # summation-to-delta: maps an attribution to max|sum(attr) - delta| / max|delta|
    completeness: Callable[[Tensor], float] | None = None


def build_cases(args, model: nn.Module, x: Tensor, t: Tensor) -> list[Case]:
    n = x.shape[0]
    steps, nt, nb = 32, 16, 4
    chunk = 4 * n
    g = torch.Generator().manual_seed(args.seed + 1)
    shap_baselines = (0.5 * torch.randn((nb,) + tuple(x.shape[1:]), generator=g)).to(x.device)
    zeros = torch.zeros_like(x)
    layer = gradcam_layer_name(model, args.gradcam_layer)

    # Captum's DeepLift/DeepLiftShap cannot handle a ReLU module called several times per pass
    dl_model, n_reused = distinct_relu_copy(model, x)
    dl_note = []
    if n_reused:
        dl_note = [f"Captum timed on a functionally identical deep copy in which each of the "
                   f"{n_reused} reused nn.ReLU modules is replaced by one nn.ReLU per call site "
                   f"(Captum's DeepLift raises on reused ReLU modules); attrlab runs on the "
                   f"original model"]

    with torch.no_grad():
        f_x = model(x).gather(1, t.view(-1, 1)).squeeze(1)
        delta_zero = f_x - model(zeros).gather(1, t.view(-1, 1)).squeeze(1)
        delta_shap = f_x - model(shap_baselines)[:, t].mean(0)

    def completeness(delta: Tensor) -> Callable[[Tensor], float]:
        def err(attr: Tensor) -> float:
            return ((attr.flatten(1).sum(1) - delta).abs().max() / delta.abs().max()).item()
        return err

    def seeded(fn):
        def run():
            torch.manual_seed(args.seed + 2)  # same noise for attrlab and Captum (SmoothGrad)
            return fn()
        return run

    al = {
        "saliency": methods.get("saliency", model),
        "gxi": methods.get("gxi", model),
        "ig": methods.get("ig", model, n_steps=steps, method="gausslegendre"),
        "ig_chunk": methods.get("ig", model, n_steps=steps, method="gausslegendre",
                                internal_batch_size=chunk),
        "gbp": methods.get("gbp", model),
        "deeplift": methods.get("deeplift", model),
        "deepshap": methods.get("deepshap", model),
        "gradcam": methods.get("gradcam", model, layer=layer, relu_attributions=True),
        "smoothgrad": methods.get("smoothgrad", model, base="saliency", nt_samples=nt,
                                  stdevs=0.1),
    }
    ct_ig = IntegratedGradients(model)
    cases = [
        Case("saliency", lambda: al["saliency"].attribute(x, target=t),
             lambda: Saliency(model).attribute(x, target=t), n, "1 pass (abs=True)"),
        Case("gxi", lambda: al["gxi"].attribute(x, target=t),
             lambda: InputXGradient(model).attribute(x, target=t), n, "1 pass"),
        Case("ig (ibs=None)", lambda: al["ig"].attribute(x, target=t, baselines=zeros),
             lambda: ct_ig.attribute(x, baselines=zeros, target=t, n_steps=steps,
                                     method="gausslegendre", internal_batch_size=None),
             steps * n, f"{steps} steps x {n} rows, gausslegendre, zero baseline"),
        Case(f"ig (ibs={chunk})", lambda: al["ig_chunk"].attribute(x, target=t, baselines=zeros),
             lambda: ct_ig.attribute(x, baselines=zeros, target=t, n_steps=steps,
                                     method="gausslegendre", internal_batch_size=chunk),
             steps * n, f"{steps} steps x {n} rows in chunks of {chunk} rows; floor is "
                        f"still ONE batch of {steps * n} rows"),
        Case("gbp", lambda: al["gbp"].attribute(x, target=t),
             lambda: GuidedBackprop(model).attribute(x, target=t), n, "1 pass"),
        Case("deeplift", lambda: al["deeplift"].attribute(x, target=t, baselines=zeros),
             lambda: DeepLift(dl_model).attribute(x, baselines=zeros, target=t),
             2 * n, f"2 x {n} rows ([x; x']), zero baseline", list(dl_note),
             completeness(delta_zero)),
        Case(f"deepshap ({nb} bl)",
             lambda: al["deepshap"].attribute(x, target=t, baselines=shap_baselines),
             lambda: DeepLiftShap(dl_model).attribute(x, baselines=shap_baselines, target=t),
             2 * nb * n, f"{nb} baselines x 2 x {n} rows", list(dl_note),
             completeness(delta_shap)),
        Case(f"gradcam ({layer})", lambda: al["gradcam"].layer_attribute(x, target=t),
             lambda: LayerGradCam(model, model.get_submodule(layer)).attribute(
                 x, target=t, relu_attributions=True),
             n, "1 pass (layer-shaped map, relu_attributions=True, attrlab layer_attribute)"),
        Case(f"smoothgrad ({nt})",
             seeded(lambda: al["smoothgrad"].attribute(x, target=t)),
             seeded(lambda: NoiseTunnel(Saliency(model)).attribute(
                 x, nt_type="smoothgrad", nt_samples=nt, stdevs=0.1, target=t)),
             nt * n, f"{nt} samples x {n} rows, stdevs=0.1, Saliency (abs) base"),
    ]
    if args.only:
        wanted = set(args.only.split(","))
        cases = [c for c in cases if c.name.split(" ")[0] in wanted]
    return cases


def rel_diff(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max |b|  (a shape mismatch is reported as inf)."""
    if not isinstance(a, Tensor) or not isinstance(b, Tensor) or a.shape != b.shape:
        return float("inf")
    scale = b.abs().max().item() or 1.0
    return (a - b).abs().max().item() / scale


# --------------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------------

def fmt(v: float | None, spec: str) -> str:
    """format(v, spec), or a right-aligned "-" of the same width for a missing value."""
    if v is None:
        width = spec.split(".")[0]
        return format("-", f">{width}") if width.isdigit() else "-"
    return format(v, spec)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet18", choices=["resnet18", "resnet8", "nib_vgg16"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=32, help="input height = width")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--min-time", type=float, default=0.0,
                   help="if > 0, methods faster than this many seconds per --repeats get more "
                   "rounds, up to about this many seconds per library (default 0: exactly "
                   "--repeats rounds)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: "
                   "torch's default)")
    p.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                   help="wall: time.perf_counter (default); cpu: time.process_time, the CPU "
                   "time of this process (all its threads), much less sensitive to other "
                   "processes competing for the cores (CPU device only)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--gradcam-layer", default=None, help="default: layer4, else layer3, else "
                   "the last conv")
    p.add_argument("--only", default=None, help="comma-separated method names (saliency,gxi,"
                   "ig,gbp,deeplift,deepshap,gradcam,smoothgrad)")
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", module="captum")

    model, desc = build_model(args.model, args.size, args.seed)
    model.to(device)
    torch.manual_seed(args.seed)
    x = torch.randn(args.batch, 3, args.size, args.size).to(device)
    t = torch.randint(0, NUM_CLASSES, (args.batch,)).to(device)

    # the floor runs on a copy with requires_grad=False everywhere (attrlab's model_guard)
    floor_model = copy.deepcopy(model).eval()
    for prm in floor_model.parameters():
        prm.requires_grad_(False)

    cases = build_cases(args, model, x, t)
    print(f"model: {desc}; input {args.batch}x3x{args.size}x{args.size}; device {device}; "
          f"threads {torch.get_num_threads()}; repeats {args.repeats} (median, 1 warm-up"
          f"{f'; fast methods: rounds for ~{args.min_time} s' if args.min_time else ''}); clock "
          f"{args.clock} ({CLOCKS[args.clock].__name__})")
    print(f"torch {torch.__version__}, captum {captum.__version__}, attrlab "
          f"{attrlab.__version__}, python {platform.python_version()}")
    if hasattr(os, "getloadavg"):
        print("load average before the run: " + ", ".join(f"{v:.2f}" for v in os.getloadavg())
              + f" on {os.cpu_count()} CPUs (other processes make CPU timings noisy)")
    print("floor = ONE batched forward + torch.autograd.grad(sum of target logits, input) of "
          "the same total rows through the plain model, parameters requires_grad=False")
    print()

    rows = []
    for case in cases:
        try:
            fns = {"attrlab": case.attrlab, "captum": case.captum,
                   "floor": make_floor(floor_model, x, t, case.rows)}
            samples, res = time_interleaved({k: _labelled(k, fn) for k, fn in fns.items()},
                                            args.repeats, device, CLOCKS[args.clock],
                                            args.min_time)
            err = None
        except Exception as exc:  # report a failing library, keep benchmarking the others
            err = str(exc).splitlines()[0][:240]
            samples, res = {}, {}
        med = {k: statistics.median(v) for k, v in samples.items()}
        a, c, f = med.get("attrlab"), med.get("captum"), med.get("floor")
        row = {
            "method": case.name, "rounds": len(samples.get("attrlab", [])),
            "attrlab_s": a, "captum_s": c, "floor_s": f,
            "attrlab_over_captum": a / c if a and c else None,
            "attrlab_over_floor": a / f if a and f else None,
            "floor_rows": case.rows, "passes": case.passes,
            "samples_s": samples, "min_s": {k: min(v) for k, v in samples.items()},
            "max_rel_diff_vs_captum": rel_diff(res["attrlab"], res["captum"]) if res else None,
            "notes": case.notes + ([f"error: {err}"] if err else []),
        }
        if res and case.completeness is not None:
            ea, ec = case.completeness(res["attrlab"]), case.completeness(res["captum"])
            row["completeness_err"] = {"attrlab": ea, "captum": ec}
            row["notes"].append(f"summation-to-delta error max|sum(attr) - delta|/max|delta|: "
                                f"attrlab {ea:.1e}, captum {ec:.1e}")
        miss = []
        if row["attrlab_over_captum"] is not None and row["attrlab_over_captum"] > TARGET_CAPTUM:
            miss.append("captum")
        if row["attrlab_over_floor"] is not None and row["attrlab_over_floor"] > TARGET_FLOOR:
            miss.append("floor")
        row["misses"] = miss
        rows.append(row)
        print(f"  done {case.name}: attrlab {fmt(a, '.4f')} s, captum {fmt(c, '.4f')} s, "
              f"floor {fmt(f, '.4f')} s" + (f"  [{err}]" if err else ""), flush=True)

    head = (f"{'method':<21} {'attrlab s':>10} {'captum s':>10} {'attrlab/captum':>15} "
            f"{'floor s':>10} {'attrlab/floor':>14} {'rows':>5} {'n':>3} {'diff':>8}  miss")
    print()
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['method']:<21} {fmt(r['attrlab_s'], '10.4f')} {fmt(r['captum_s'], '10.4f')} "
              f"{fmt(r['attrlab_over_captum'], '15.2f')} {fmt(r['floor_s'], '10.4f')} "
              f"{fmt(r['attrlab_over_floor'], '14.2f')} {r['floor_rows']:>5} {r['rounds']:>3} "
              f"{fmt(r['max_rel_diff_vs_captum'], '8.1e')}  "
              + ("ERROR (see notes)" if r["attrlab_s"] is None or r["captum_s"] is None else
                 "MISS " + "+".join(r["misses"]) if r["misses"] else "ok"))
    print()
    print(f"targets: attrlab/captum <= {TARGET_CAPTUM}, attrlab/floor <= {TARGET_FLOOR}; "
          "rows = floor rows; n = timed rounds;\n  diff = max|attrlab - captum| / max|captum| on the "
          "warm-up run")
    for r in rows:
        for note in [r["passes"]] + r["notes"]:
            print(f"  {r['method']}: {note}")

    if args.json:
        out = {
            "config": {k: v for k, v in vars(args).items()} | {
                "model_desc": desc, "threads_used": torch.get_num_threads(),
                "torch": torch.__version__, "captum": captum.__version__,
                "attrlab": attrlab.__version__, "python": platform.python_version(),
                "machine": platform.machine(), "cpu_count": os.cpu_count(),
                "loadavg_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
                "targets": {"attrlab_over_captum": TARGET_CAPTUM,
                            "attrlab_over_floor": TARGET_FLOOR},
            },
            "rows": rows,
        }
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
