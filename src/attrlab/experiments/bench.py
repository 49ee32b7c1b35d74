"""``attrlab bench``: methods x metrics on a model and data set, stored as computed.

The unit of work is (method, batch of samples): attributions are computed once per unit and
every pending metric is evaluated on them; each metric's scores for the unit are written in
one transaction, so a run that is interrupted resumes at the first unfinished unit.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .store import ResultStore

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULT_CHECKPOINT = "digits_nib_cnn"

# Configuration keys that change the numbers: a stored run must match them to be resumed.
_RESULT_KEYS = ("checkpoint", "torchvision", "dataset", "split", "limit", "methods",
                "metrics", "method_options", "metric_options", "target", "seed")


@dataclass
class BenchConfig:
    """What to run. Every field can come from a TOML/YAML file and/or command-line options."""

    checkpoint: str | None = DEFAULT_CHECKPOINT
    torchvision: str | None = None      # e.g. "resnet18" (with weights, num_classes, input_size)
    weights: str | None = None
    num_classes: int | None = None
    input_size: int | None = None
    dataset: str | None = None          # default: the checkpoint's data set
    split: str = "test"
    limit: int | None = 64              # first N samples of the split (None: all)
    methods: list[str] | None = None    # default: every registered method
    metrics: list[str] | None = None    # default: every registered fast metric
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    metric_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    target: str = "label"               # "label" (true class) or "pred" (predicted class)
    batch_size: int = 32
    seed: int = 0
    device: str = "cpu"
    data_dir: str | None = None
    out: str = "attrlab-bench"
    report_samples: int = 4

    @classmethod
    def from_file(cls, path: str | Path) -> "BenchConfig":
        """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) configuration file."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} not found")
        text = path.read_text(encoding="utf-8")
        if path.suffix in (".yaml", ".yml"):
            try:
                import yaml
            except ImportError as err:
                raise ValueError("YAML configs need PyYAML (pip install pyyaml); "
                                 "or write the config as TOML") from err
            data = yaml.safe_load(text) or {}
        else:
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as err:
                raise ValueError(f"{path}: invalid TOML: {err}") from err
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> "BenchConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**data)

    def result_key(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _RESULT_KEYS}


def versions() -> dict[str, str]:
    """Versions recorded in the report."""
    import numpy
    import torchvision

    from .. import __version__
    return {"attrlab": __version__, "torch": str(torch.__version__),
            "torchvision": torchvision.__version__, "numpy": numpy.__version__,
            "python": platform.python_version()}


@dataclass
class Setup:
    """Everything a run needs, resolved from a :class:`BenchConfig`."""

    model: torch.nn.Module
    meta: dict[str, Any]
    dataset: Any
    indices: Tensor
    methods: dict[str, Any]   # name -> method, with its call options bound
    metrics: dict[str, Any]
    notes: list[str]


def resolve(cfg: BenchConfig, with_metrics: bool = True) -> Setup:
    """Load model and data, build methods and metrics; all errors are raised here, early."""
    from .. import metrics as M
    from ..data import load_dataset
    from ..methods import available, get
    from ..methods.options import check_options
    from ..models.loading import load_model
    from .fitting import fit_methods, reference_data

    if cfg.target not in ("label", "pred"):
        raise ValueError(f"target must be 'label' or 'pred', got {cfg.target!r}")
    if not isinstance(cfg.batch_size, int) or cfg.batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {cfg.batch_size!r}")
    model, meta = load_model(checkpoint=None if cfg.torchvision else cfg.checkpoint,
                             torchvision_model=f"torchvision:{cfg.torchvision}"
                             if cfg.torchvision else None, weights=cfg.weights,
                             num_classes=cfg.num_classes, input_size=cfg.input_size)
    model = model.to(cfg.device).eval()
    name = cfg.dataset or meta.get("dataset")
    if not name:
        raise ValueError("no dataset: give --dataset (the model's metadata names none)")
    data = load_dataset(name, cfg.split, cfg.data_dir)
    n = len(data) if cfg.limit is None else min(cfg.limit, len(data))
    if n < 1:
        raise ValueError(f"limit must be positive, got {cfg.limit}")
    indices = torch.arange(n)
    notes: list[str] = []
    method_names = cfg.methods or available()
    methods = {m: get(m, model, **check_options(m, cfg.method_options.get(m, {})))
               for m in method_names}
    if any(m.needs_data for m in methods.values()):
        x0, _ = data.tensors(indices[:1])
        notes += fit_methods(methods, *reference_data(x0, meta, name, cfg.data_dir))
    unknown_opts = set(cfg.method_options) - set(method_names)
    if unknown_opts:
        raise ValueError(f"method_options for methods not in the run: {sorted(unknown_opts)}")
    metric_names = cfg.metrics or [k for k in M.available() if M.metric_class(k).fast]
    metrics = {k: M.get(k, **cfg.metric_options.get(k, {}))
               for k in (metric_names if with_metrics else [])}
    return Setup(model, meta, data, indices, methods, metrics, notes)


def evaluate(metric: Any, model: torch.nn.Module, x: Tensor, t: Tensor, attr: Tensor,
             method: Any) -> tuple[Tensor, tuple[Tensor, Tensor] | None]:
    """Scores (and the curve, for curve metrics) of one metric on one batch."""
    kwargs = {"method": method} if getattr(metric, "needs_method", False) else {}
    if hasattr(metric, "evaluate_with_curve"):
        return metric.evaluate_with_curve(model, x, t, attr, **kwargs)
    scores = metric.evaluate(model, x, t, attr, **kwargs)
    curve = metric.curve(model, x, t, attr, **kwargs) if hasattr(metric, "curve") else None
    return scores, curve


def run(cfg: BenchConfig, progress: bool = True, fresh: bool = False) -> Path:
    """Run (or resume) the benchmark into ``cfg.out``; returns the store path."""
    from tqdm.auto import tqdm

    setup = resolve(cfg)
    out = Path(cfg.out)
    path = out / "results.sqlite"
    if fresh and path.exists():
        path.unlink()
    with ResultStore(path) as store:
        previous = store.info("result_key")
        if previous is not None and previous != json.loads(json.dumps(cfg.result_key())):
            raise ValueError(f"{path} holds results of a different configuration; use another "
                             "--out or --fresh to start over")
        store.set_info("result_key", cfg.result_key())
        store.set_info("config", asdict(cfg))
        store.set_info("versions", versions())
        store.set_info("meta", {k: v for k, v in setup.meta.items() if k != "recipe"})
        store.set_info("notes", setup.notes)
        store.set_info("higher_is_better", {k: bool(m.higher_is_better)
                                            for k, m in setup.metrics.items()})
        batches = setup.indices.split(cfg.batch_size)
        units = [(m, b) for m in setup.methods for b in batches]
        started = time.perf_counter()
        bar = tqdm(units, desc="bench", disable=not progress, file=sys.stderr)
        for name, idx in bar:
            bar.set_postfix(method=name)
            pending = [k for k in setup.metrics if not store.done(name, k, idx.tolist())]
            if not pending:
                continue
            method = setup.methods[name]
            x, y = setup.dataset.tensors(idx)
            x, y = x.to(cfg.device), y.to(cfg.device)
            if cfg.target == "pred":
                with torch.no_grad():
                    y = setup.model(x).argmax(1)
            # per-unit seed, so a resumed or sharded run draws the same noise
            attr = method.attribute(x, y, **method.seeded(cfg.seed * 100003 + int(idx[0])))
            for k in pending:
                scores, curve = evaluate(setup.metrics[k], setup.model, x, y, attr, method)
                curve_rows = None
                if curve is not None:
                    curve_rows = (curve[0].tolist(), curve[1].tolist())
                store.add(name, k, idx.tolist(), scores.tolist(), curve_rows)
        store.set_info("seconds_last_run", time.perf_counter() - started)
    return path
