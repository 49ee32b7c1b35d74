"""``attrlab bench``: methods x metrics on a model and data set, stored as computed.

The run is a :class:`~attrlab.experiments.planner.Plan` of content-named units, one per
(method, metric, batch of samples), grouped by batch: a group loads its batch once, computes
each method's attributions once and scores them with every metric. Each unit's scores are
written in one transaction (:class:`~attrlab.experiments.store.ResultStore`), so a run that is
interrupted resumes at the first unfinished unit; ``shard=(i, n)`` runs every n-th group, and
:func:`~attrlab.experiments.store.merge` combines the shards' stores.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import Tensor

from ..core.checks import check_device
from .planner import Group, Plan, Result, Unit, model_fingerprint, parse_shard
from .store import ResultStore

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

DEFAULT_CHECKPOINT = "digits_nib_cnn"


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
        for key in ("methods", "metrics"):  # a string would be read character by character
            value = data.get(key)
            if value is not None and (not isinstance(value, (list, tuple))
                                      or not all(isinstance(v, str) for v in value)):
                raise ValueError(f"{source}: {key} must be a list of names (e.g. {key} = "
                                 f"[\"ig\"]), got {value!r}")
        return cls(**data)


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
    methods: dict[str, Any]   # name -> method, built with its options (and fitted)
    metrics: dict[str, Any]
    notes: list[str]
    fingerprint: dict[str, str] = field(default_factory=dict)  # planner.model_fingerprint
    data_spec: dict[str, Any] = field(default_factory=dict)    # {"dataset", "split"}
    method_specs: dict[str, dict[str, Any]] = field(default_factory=dict)  # {"name", "options"}
    metric_specs: dict[str, dict[str, Any]] = field(default_factory=dict)


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
    for key in ("methods", "metrics") if with_metrics else ("methods",):
        if getattr(cfg, key) is not None and not getattr(cfg, key):
            raise ValueError(f"{key} is empty (leave it out for every one)")
    check_device(cfg.device)
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
    # a method's content: its options as given and, for fitted methods, what fit() learned
    method_specs = {m: {"name": m, "options": dict(cfg.method_options.get(m, {})),
                        **({"state": methods[m].state_dict()} if methods[m].needs_data else {})}
                    for m in method_names}
    unknown_opts = set(cfg.method_options) - set(method_names)
    if unknown_opts:
        raise ValueError(f"method_options for methods not in the run: {sorted(unknown_opts)}")
    metric_names = cfg.metrics or [k for k in M.available() if M.metric_class(k).fast]
    unknown_opts = set(cfg.metric_options) - set(metric_names)
    if unknown_opts:
        raise ValueError(f"metric_options for metrics not in the run: {sorted(unknown_opts)}")
    metrics = {k: M.get(k, **cfg.metric_options.get(k, {}))
               for k in (metric_names if with_metrics else [])}
    metric_specs = {k: {"name": k, "options": dict(cfg.metric_options.get(k, {}))}
                    for k in metrics}
    fingerprint = model_fingerprint(model, f"torchvision:{cfg.torchvision}" if cfg.torchvision
                                    else str(cfg.checkpoint))
    return Setup(model, meta, data, indices, methods, metrics, notes, fingerprint,
                 {"dataset": name, "split": cfg.split}, method_specs, metric_specs)


def plan(cfg: BenchConfig, setup: Setup) -> Plan:
    """The run's units: one per (method, metric, batch), grouped by batch (method-major order
    within a group, as the maps are computed)."""
    groups = []
    for idx in setup.indices.split(cfg.batch_size):
        samples = tuple(idx.tolist())
        shared = {"kind": "bench", "model": setup.fingerprint, "data": setup.data_spec,
                  "samples": samples, "target": cfg.target, "seed": cfg.seed}
        # the device type names the numbers too (CUDA draws other noise, rounds otherwise);
        # the batch size does through the samples of each unit
        units = tuple(Unit("bench", setup.fingerprint, setup.data_spec, samples,
                           setup.method_specs[m], setup.metric_specs[k], cfg.seed,
                           {"target": cfg.target, "device": torch.device(cfg.device).type})
                      for m in setup.methods for k in setup.metrics)
        groups.append(Group(shared, units))
    return Plan(tuple(groups))


def score_maps(metric: Any, model: torch.nn.Module, x: Tensor, t: Tensor,
               maps: Mapping[str, Tensor], methods: Mapping[str, Any]
               ) -> Iterator[tuple[str, Tensor, tuple[Tensor, Tensor] | None]]:
    """The one adapter between the runner and the metric API: yields ``(method name, scores,
    curve or None)`` for each map of ``maps`` (one batch; ``methods`` by the same names).

    Metrics with ``shares_model_passes`` score all maps in one ``compute_many`` call (the
    model passes that do not depend on the map are made once); the others ``compute`` each
    map, so each result can be stored as soon as it exists."""
    needs = bool(getattr(metric, "needs_method", False))
    if getattr(metric, "shares_model_passes", False):
        results = metric.compute_many(model, x, t, dict(maps), methods=(
            {name: methods[name] for name in maps} if needs else None))
        for name in maps:
            yield name, results[name].scores, results[name].curve
        return
    for name, attr in maps.items():
        r = metric.compute(model, x, t, attr, method=methods[name] if needs else None)
        yield name, r.scores, r.curve


def _result(unit: Unit, scores: Tensor, curve: tuple[Tensor, Tensor] | None) -> Result:
    c = None
    if curve is not None:
        c = (tuple(curve[0].tolist()), tuple(tuple(r) for r in curve[1].tolist()))
    return Result(unit.key, unit.samples, tuple(scores.tolist()), c)


def execute_group(setup: Setup, cfg: BenchConfig, group: Group,
                  done: frozenset[str] | set[str] = frozenset()) -> Iterator[tuple[Unit, Result]]:
    """Compute the units of ``group`` whose keys are not in ``done``; yields each
    ``(unit, result)`` as soon as it is computed.

    Each method's maps of the batch are computed once (random methods draw from a generator
    seeded with ``seed * 100003 + first sample``: :meth:`Attribution.seeded`, so a resumed or
    sharded run draws the same noise); metrics that call the method again (``needs_method``)
    score each map on its own, every other metric scores the maps of all methods of the
    batch through :func:`score_maps`."""
    pending = [u for u in group.units if u.key not in done]
    if not pending:
        return
    idx = torch.tensor(group.units[0].samples, dtype=torch.long)
    x, y = setup.dataset.tensors(idx)
    x, y = x.to(cfg.device), y.to(cfg.device)
    if cfg.target == "pred":
        with torch.no_grad():
            y = setup.model(x).argmax(1)
    needs = {k: bool(getattr(m, "needs_method", False)) for k, m in setup.metrics.items()}
    maps: dict[str, Tensor] = {}
    for name in dict.fromkeys(u.method_name for u in pending):
        method = setup.methods[name]
        maps[name] = method.attribute(x, y, **method.seeded(cfg.seed * 100003 + int(idx[0])))
        for u in pending:
            if u.method_name == name and needs[u.metric_name]:
                for _, scores, curve in score_maps(setup.metrics[u.metric_name], setup.model,
                                                   x, y, {name: maps[name]}, {name: method}):
                    yield u, _result(u, scores, curve)
    for k, metric in setup.metrics.items():
        if needs[k]:
            continue
        units = {u.method_name: u for u in pending if u.metric_name == k}
        if not units:
            continue
        for name, scores, curve in score_maps(metric, setup.model, x, y,
                                              {m: maps[m] for m in units}, setup.methods):
            yield units[name], _result(units[name], scores, curve)


def run(cfg: BenchConfig, progress: bool = True, fresh: bool = False,
        shard: tuple[int, int] | str | None = None) -> Path:
    """Run (or resume) the benchmark into ``cfg.out``; returns the store path.

    ``shard=(i, n)`` (or ``"i/n"``) computes only the groups ``i, i + n, ...`` of the plan
    (:meth:`Plan.shard`); the store still records the whole plan, so the stores of all ``n``
    shards merge (:func:`attrlab.experiments.store.merge`) into the unsharded result."""
    from tqdm.auto import tqdm

    if isinstance(shard, str):
        shard = parse_shard(shard)
    elif shard is not None:
        parse_shard(f"{shard[0]}/{shard[1]}")
    setup = resolve(cfg)
    full = plan(cfg, setup)
    todo = full if shard is None else full.shard(*shard)
    out = Path(cfg.out)
    path = out / "results.sqlite"
    if fresh and path.exists():
        path.unlink()
    with ResultStore(path) as store:
        store.set_plan(full)
        store.set_info("shard", None if shard is None else f"{shard[0]}/{shard[1]}")
        store.set_info("config", asdict(cfg))
        store.set_info("versions", versions())
        store.set_info("meta", {k: v for k, v in setup.meta.items() if k != "recipe"})
        store.set_info("notes", setup.notes)
        store.set_info("higher_is_better", {k: bool(m.higher_is_better)
                                            for k, m in setup.metrics.items()})
        done = store.done_keys()
        pending = todo.pending(done)
        started = time.perf_counter()
        bar = tqdm(total=len(todo), initial=len(todo) - len(pending), desc="bench",
                   disable=not progress, file=sys.stderr)
        for group in pending.groups:
            for unit, result in execute_group(setup, cfg, group, done):
                store.put(unit, result)
                bar.set_postfix(method=unit.method_name)
                bar.update(1)
        bar.update(sum(u.key in done for g in pending.groups for u in g.units))
        bar.close()
        store.set_info("seconds_last_run", time.perf_counter() - started)
    return path
