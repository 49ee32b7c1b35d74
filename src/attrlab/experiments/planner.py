"""Work units and plans: what an experiment computes, named by content.

A :class:`Unit` is one piece of work together with everything that changes its numbers: the
model (a stable fingerprint: checkpoint or architecture name plus the SHA-1 of its
``state_dict``), the data (data set name and split, independent of where the files live), the
data slice (sample indices), the attribution method and its options, the metric and its
options, the seed and the remaining switches (e.g. ``target``). ``unit.key`` is the SHA-256 of
the unit's canonical JSON (:func:`canonical_json`: sorted keys, tensors and arrays replaced by
a digest of their bytes), so equal work has equal keys on every machine and a changed setting
is a new unit, never a silently reused result.

A :class:`Plan` is the ordered list of a run's units, grouped for execution: a
:class:`Group` holds the units that share their expensive inputs (in ``attrlab bench``: one
batch of samples, whose attribution maps are computed once per method and scored by every
metric). :meth:`Plan.shard` splits a plan by whole groups, deterministically, so that
``--shard i/n`` runs on ``n`` machines cover the plan exactly once. A group (its units' specs)
plus the run's configuration is all a worker needs; results come back as rows keyed by the
unit key (:class:`Result`).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import PurePath
from typing import Any, Iterable, Mapping, Sequence

import torch
from torch import Tensor, nn

# --------------------------------------------------------------------------------------------
# Canonical JSON and digests
# --------------------------------------------------------------------------------------------


def tensor_digest(t: Tensor) -> str:
    """SHA-1 of a tensor's dtype, shape and bytes (device and strides do not matter)."""
    t = t.detach().to("cpu").contiguous()
    h = hashlib.sha1(f"{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def canonical(obj: Any) -> Any:
    """``obj`` as plain JSON values: mappings with string keys, lists, str, int, float, bool,
    None; tensors and numpy arrays become ``{"tensor": sha1, "shape": [...], "dtype": ...}``.

    Raises ``TypeError`` for anything else (a callable or a module has no content key)."""
    if obj is None or isinstance(obj, (bool, str, int)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"non-finite float {obj!r} in a unit specification")
        return obj
    if isinstance(obj, Tensor):
        return {"tensor": tensor_digest(obj), "shape": list(obj.shape), "dtype": str(obj.dtype)}
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy is a dependency
        np = None
    if np is not None:
        if isinstance(obj, np.ndarray):
            return canonical(torch.from_numpy(np.ascontiguousarray(obj)))
        if isinstance(obj, np.generic):
            return canonical(obj.item())
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"unit specification keys must be strings, got {k!r}")
            out[k] = canonical(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    raise TypeError(f"cannot name {type(obj).__name__} {obj!r} by content: give options as "
                    "JSON values or tensors")


def canonical_json(obj: Any) -> str:
    """Canonical JSON text of ``obj`` (:func:`canonical`, sorted keys, no spaces)."""
    return json.dumps(canonical(obj), sort_keys=True, separators=(",", ":"))


def content_key(obj: Any) -> str:
    """SHA-256 (hex) of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def state_dict_sha1(model: nn.Module) -> str:
    """SHA-1 over the names, dtypes, shapes and bytes of ``model.state_dict()``."""
    h = hashlib.sha1()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor_digest(t).encode())
    return h.hexdigest()


def model_fingerprint(model: nn.Module, name: str) -> dict[str, str]:
    """Stable identity of a model: ``name`` (a checkpoint's name -- the file name, not its
    folder -- or ``"torchvision:ARCH"``) and the SHA-1 of its weights."""
    return {"name": PurePath(name).name if not name.startswith("torchvision:") else name,
            "sha1": state_dict_sha1(model)}


# --------------------------------------------------------------------------------------------
# Units, groups, plans
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Unit:
    """One piece of work, named by its content (see the module docstring).

    ``method`` and ``metric`` are ``{"name": ..., "options": {...}}`` (``metric`` may be None
    for units that produce no metric, e.g. a cached attribution); ``extra`` holds the other
    settings that change the numbers (``{"target": "label"}`` in bench). All values are
    canonical JSON values (:func:`canonical`) -- tensors appear as digests."""

    kind: str
    model: Mapping[str, Any]
    data: Mapping[str, Any]
    samples: tuple[int, ...]
    method: Mapping[str, Any] | None
    metric: Mapping[str, Any] | None
    seed: int
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("model", "data", "method", "metric", "extra"):
            value = getattr(self, name)
            object.__setattr__(self, name, None if value is None else canonical(value))
        object.__setattr__(self, "samples", tuple(int(s) for s in self.samples))
        object.__setattr__(self, "seed", int(self.seed))

    def spec(self) -> dict[str, Any]:
        """The unit as a JSON-able dict (the input of :meth:`from_spec` and of ``key``)."""
        return {"kind": self.kind, "model": self.model, "data": self.data,
                "samples": list(self.samples), "method": self.method, "metric": self.metric,
                "seed": self.seed, "extra": self.extra}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> "Unit":
        return cls(spec["kind"], spec["model"], spec["data"], tuple(spec["samples"]),
                   spec["method"], spec["metric"], spec["seed"], spec.get("extra", {}))

    @cached_property
    def key(self) -> str:
        """Content hash: SHA-256 of the canonical JSON of :meth:`spec`."""
        return content_key(self.spec())

    @property
    def method_name(self) -> str | None:
        return None if self.method is None else self.method["name"]

    @property
    def metric_name(self) -> str | None:
        return None if self.metric is None else self.metric["name"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Unit) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    def __repr__(self) -> str:
        return (f"Unit({self.kind}: {self.method_name} x {self.metric_name}, samples "
                f"{self.samples[0] if self.samples else ''}..{self.samples[-1] if self.samples else ''}"
                f", key {self.key[:12]})")


@dataclass(frozen=True)
class Group:
    """Units executed together because they share inputs (e.g. one batch's maps).

    ``shared`` names what they share (JSON values; in bench the model, data, samples, target
    and seed); ``key`` is its content hash."""

    shared: Mapping[str, Any]
    units: tuple[Unit, ...]

    @cached_property
    def key(self) -> str:
        return content_key(self.shared)


@dataclass(frozen=True)
class Result:
    """What a worker sends back for one unit: per-sample scores (and curves)."""

    key: str
    samples: tuple[int, ...]
    scores: tuple[float, ...]
    curve: tuple[tuple[float, ...], tuple[tuple[float, ...], ...]] | None = None


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(v) for v in str(text).split("/"))
    except ValueError:
        raise ValueError(f"shard must look like I/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"shard {text!r}: need 0 <= I < N")
    return i, n


@dataclass(frozen=True)
class Plan:
    """The ordered groups of units of one run."""

    groups: tuple[Group, ...]

    @property
    def units(self) -> list[Unit]:
        return [u for g in self.groups for u in g.units]

    def keys(self) -> list[str]:
        return [u.key for u in self.units]

    @cached_property
    def key(self) -> str:
        """Content hash of the ordered unit keys."""
        return content_key(self.keys())

    def __len__(self) -> int:
        return sum(len(g.units) for g in self.groups)

    def shard(self, i: int, n: int) -> "Plan":
        """Groups ``i, i + n, i + 2n, ...`` (whole groups only; shards are disjoint and their
        union is the plan)."""
        if not (isinstance(n, int) and isinstance(i, int) and n >= 1 and 0 <= i < n):
            raise ValueError(f"shard needs 0 <= i < n, got i={i!r}, n={n!r}")
        return Plan(tuple(g for j, g in enumerate(self.groups) if j % n == i))

    def pending(self, done: Iterable[str]) -> "Plan":
        """The groups that still have a unit whose key is not in ``done``. Groups keep all
        their units: the executor skips the done ones itself (it may have to recompute some
        to reproduce a random state)."""
        done = set(done)
        return Plan(tuple(g for g in self.groups if any(u.key not in done for u in g.units)))


def group_units(units: Sequence[Unit], shared_of) -> Plan:
    """Group ``units`` (order kept, groups in order of first appearance) by ``shared_of(unit)``
    (a JSON-able value)."""
    order: dict[str, tuple[Any, list[Unit]]] = {}
    for u in units:
        s = shared_of(u)
        order.setdefault(content_key(s), (s, []))[1].append(u)
    return Plan(tuple(Group(s, tuple(us)) for s, us in order.values()))


__all__ = ["Group", "Plan", "Result", "Unit", "canonical", "canonical_json", "content_key",
           "group_units", "model_fingerprint", "parse_shard", "state_dict_sha1",
           "tensor_digest"]
