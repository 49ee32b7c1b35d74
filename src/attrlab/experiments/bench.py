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


# the default method set: registered methods costing at most this many passes per sample at
# their defaults (``Attribution.cost()``); costlier ones (occlusion, feature ablation, RISE,
# LIME, KernelSHAP) run when named in ``methods``
DEFAULT_COST_CAP = 200.0


def default_methods() -> list[str]:
    """The methods ``attrlab bench`` runs when none are named: every registered method in the
    default set (``Attribution.default_set``: not one that must be trained or calibrated
    first) whose cost per sample at its default options is at most :data:`DEFAULT_COST_CAP`."""
    from ..methods import available, method_class

    return [m for m in available()
            if method_class(m).default_set and method_class(m).cost() <= DEFAULT_COST_CAP]


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
    methods: list[str] | None = None    # default: registered methods up to DEFAULT_COST_CAP
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
    from importlib.metadata import version

    import numpy

    from .. import __version__
    return {"attrlab": __version__, "torch": str(torch.__version__),
            "torchvision": version("torchvision"), "numpy": numpy.__version__,
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


def _is_path(name: str) -> bool:
    return name.endswith(".npz") or "/" in name or "\\" in name or Path(name).is_dir()


def _data_sha1(dataset: Any, n: int) -> str:
    """SHA-1 of the first ``n`` samples (inputs and labels) of a user's data set."""
    import hashlib

    x, y = dataset.tensors(torch.arange(n))
    h = hashlib.sha1()
    h.update(x.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(y.detach().long().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _logits_model(model: torch.nn.Module, data: Any, cfg: "BenchConfig") -> torch.nn.Module:
    """A Python-given model returning Hugging Face ``ModelOutput``s, wrapped to return their
    ``.logits`` (metrics call the model directly); others as they are."""
    from .api import LogitsOf

    x, _ = data.tensors(torch.arange(1))
    with torch.no_grad():
        out = model(x.to(cfg.device))
    if not isinstance(out, Tensor) and isinstance(getattr(out, "logits", None), Tensor):
        return LogitsOf(model).eval()
    return model


def check_model_data(model: torch.nn.Module, meta: Mapping[str, Any], dataset: Any,
                     x: Tensor, labels: Tensor) -> list[str]:
    """Warnings where the model and the data disagree: class count, input size,
    normalisation constants, and inputs whose statistics do not look normalised."""
    warn = []
    info = dataset.info
    with torch.no_grad():
        out = model(x)
    k = out.shape[1] if out.dim() == 2 else 1
    n_data = max(int(getattr(info, "num_classes", 0) or 0), int(labels.max()) + 1)
    if n_data > k:
        raise ValueError(f"the data has {n_data} classes but the model only {k} outputs")
    if n_data != k:
        warn.append(f"the model has {k} outputs but the data {n_data} classes: is this the "
                    "model trained on this data?")
    size = meta.get("input_size")
    if size and int(size) != int(x.shape[-1]):
        warn.append(f"the model expects {size}-pixel inputs but the data is "
                    f"{x.shape[-1]} px: attributions of a model run off its resolution are "
                    "hard to read")
    m_mean, m_std = meta.get("mean"), meta.get("std")
    if m_mean and m_std and info.mean and len(m_mean) == len(info.mean):
        gap = max(max(abs(a - b) for a, b in zip(m_mean, info.mean)),
                  max(abs(a - b) for a, b in zip(m_std, info.std)))
        if gap > 0.02:
            warn.append(f"the data is normalised with mean {list(info.mean)} / std "
                        f"{list(info.std)} but the model expects mean {list(m_mean)} / std "
                        f"{list(m_std)}")
    chan = x.transpose(0, 1).flatten(1)
    mu, sd = chan.mean(1), chan.std(1)
    if bool((mu.abs() > 1.5).any()) or bool(((sd < 0.25) | (sd > 4)).any()):
        warn.append(f"the inputs do not look normalised (per-channel mean "
                    f"{[round(float(v), 2) for v in mu]}, std {[round(float(v), 2) for v in sd]})")
    return warn


def resolve(cfg: BenchConfig, with_metrics: bool = True, model: torch.nn.Module | None = None,
            data: Any = None) -> Setup:
    """Load model and data, build methods and metrics; all errors are raised here, early.

    ``model``/``data`` (from Python, :func:`run`) replace the configured ones: any
    ``nn.Module`` and a torch ``Dataset`` of (normalised input, label) pairs (or an attrlab
    data set). ``cfg.dataset`` may also be a path to a user's ImageFolder tree or ``.npz``
    (:func:`attrlab.data.files.user_dataset`)."""
    import warnings

    from .. import metrics as M
    from ..data import load_dataset
    from ..data.core import DATASETS
    from ..data.files import from_torch_dataset, user_dataset
    from ..methods import get
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
    if model is None:
        model, meta = load_model(checkpoint=None if cfg.torchvision else cfg.checkpoint,
                                 torchvision_model=f"torchvision:{cfg.torchvision}"
                                 if cfg.torchvision else None, weights=cfg.weights,
                                 num_classes=cfg.num_classes, input_size=cfg.input_size)
        model_name = f"torchvision:{cfg.torchvision}" if cfg.torchvision else str(cfg.checkpoint)
    else:
        meta, model_name = {}, f"python:{type(model).__name__}"
    model = model.to(cfg.device).eval()
    name = cfg.dataset or meta.get("dataset")
    python_model = not meta
    if data is not None:
        data = from_torch_dataset(data, name or "dataset", cfg.limit)
        name = name or data.info.name
        data_spec: dict[str, Any] = {"dataset": f"python:{name}", "split": cfg.split}
    elif not name:
        raise ValueError("no dataset: give --dataset (the model's metadata names none)")
    elif name not in DATASETS and _is_path(name):
        data = user_dataset(name, meta, cfg.split)
        data_spec = {"dataset": str(name), "split": cfg.split}
    else:
        data = load_dataset(name, cfg.split, cfg.data_dir)
        data_spec = {"dataset": name, "split": cfg.split}
    if python_model:
        model = _logits_model(model, data, cfg)
    if not meta:
        meta = {"mean": list(data.info.mean), "std": list(data.info.std),
                "input_size": None, "dataset": name}
    n = len(data) if cfg.limit is None else min(cfg.limit, len(data))
    if n < 1:
        raise ValueError(f"limit must be positive, got {cfg.limit}")
    if "sha1" not in data_spec and (data_spec["dataset"] != name or name not in DATASETS):
        data_spec["sha1"] = _data_sha1(data, n)  # a user's data: named by its content
    x0, y0 = data.tensors(torch.arange(min(n, cfg.batch_size)))
    notes: list[str] = []
    for w in check_model_data(model, meta, data, x0.to(cfg.device), y0):
        warnings.warn(w, UserWarning, stacklevel=3)
        notes.append(f"warning: {w}")
    indices = torch.arange(n)
    method_names = cfg.methods or default_methods()
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
    fingerprint = model_fingerprint(model, model_name)
    return Setup(model, meta, data, indices, methods, metrics, notes, fingerprint,
                 data_spec, method_specs, metric_specs)


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
                  done: frozenset[str] | set[str] = frozenset(),
                  timings: dict[str, list[float]] | None = None
                  ) -> Iterator[tuple[Unit, Result]]:
    """Compute the units of ``group`` whose keys are not in ``done``; yields each
    ``(unit, result)`` as soon as it is computed.

    Each method's maps of the batch are computed once (random methods draw from a generator
    seeded with ``seed * 100003 + first sample``: :meth:`Attribution.seeded`, so a resumed or
    sharded run draws the same noise); metrics that call the method again (``needs_method``)
    score each map on its own, every other metric scores the maps of all methods of the
    batch through :func:`score_maps`. ``timings`` (if given) accumulates
    ``[seconds, samples]`` of each method's attribution."""
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
        start = time.perf_counter()
        maps[name] = method.attribute(x, y, **method.seeded(cfg.seed * 100003 + int(idx[0])))
        if timings is not None:  # attribution wall time (synchronised once per batch on GPU)
            if maps[name].is_cuda:
                torch.cuda.synchronize(maps[name].device)
            t = timings.setdefault(name, [0.0, 0])
            t[0] += time.perf_counter() - start
            t[1] += len(idx)
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


def run(cfg: BenchConfig | None = None, progress: bool = True, fresh: bool = False,
        shard: tuple[int, int] | str | None = None, *, model: torch.nn.Module | None = None,
        data: Any = None, report: bool = False, **options: Any) -> Path:
    """Run (or resume) the benchmark into ``cfg.out``; returns the store path.

    From Python, ``attrlab.bench.run(model=net, data=dataset, methods=[...], metrics=[...],
    out="my-bench", report=True)`` benchmarks any ``nn.Module`` on any torch ``Dataset`` of
    (normalised input, label) pairs; ``options`` are :class:`BenchConfig` fields (on top of
    ``cfg``), ``report=True`` also writes ``report.html`` (and the CSV/LaTeX exports).
    Disagreements of model and data (classes, input size, normalisation) are warned about
    and noted in the report.

    ``shard=(i, n)`` (or ``"i/n"``) computes only the groups ``i, i + n, ...`` of the plan
    (:meth:`Plan.shard`); the store still records the whole plan, so the stores of all ``n``
    shards merge (:func:`attrlab.experiments.store.merge`) into the unsharded result."""
    from tqdm.auto import tqdm

    if cfg is None:
        cfg = BenchConfig()
    if options or model is not None:
        extra = {"checkpoint": None} if model is not None else {}
        cfg = BenchConfig.from_dict({**asdict(cfg), **extra, **options}, source="run()")
    if isinstance(shard, str):
        shard = parse_shard(shard)
    elif shard is not None:
        parse_shard(f"{shard[0]}/{shard[1]}")
    setup = resolve(cfg, model=model, data=data)
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
        timings: dict[str, list[float]] = {}
        for group in pending.groups:
            for unit, result in execute_group(setup, cfg, group, done, timings):
                store.put(unit, result)
                bar.set_postfix(method=unit.method_name)
                bar.update(1)
            if timings:
                store.set_info("method_seconds", {m: t for m, t in timings.items()})
        bar.update(sum(u.key in done for g in pending.groups for u in g.units))
        bar.close()
        store.set_info("seconds_last_run", time.perf_counter() - started)
        store.set_info("model_name", setup.fingerprint.get("name"))
        store.set_info("method_layers", {m: str(meth.layer_name) for m, meth
                                         in setup.methods.items()
                                         if getattr(meth, "layer_name", None)})
    if report:
        from .report import write_report

        write_report(path, setup=setup if (model is not None or data is not None) else None)
    return path
