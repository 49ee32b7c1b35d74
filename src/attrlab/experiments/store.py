"""The experiment store: one SQLite file for run information, work units, their per-sample
scores and curves, and artefacts (cached attributions, fitted state, JSON).

Tables::

    run       (key, value JSON)                 -- configuration, versions, the current plan
    units     (key, kind, method, metric, spec)  -- spec: the unit's canonical JSON
    plan      (plan, pos, unit)                 -- the unit keys of each recorded plan, in order
    scores    (unit, sample, score)
    curves    (unit, sample, x JSON, y JSON)
    artefacts (key, kind, value BLOB)           -- kind "torch" (torch.save bytes) or "json"

A unit's scores (and curves) are written in one transaction together with its row in
``units``; a unit whose scores are present is done. So a run killed at any point loses at most
the unit it was computing. Units are named by content (:mod:`attrlab.experiments.planner`),
so results of other settings can share the file: readers take the units of the current plan
(``run.plan``) only. :func:`merge` combines stores (e.g. the shards of one sweep).
"""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Any, Sequence

from .planner import Plan, Result, Unit, content_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS units (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, method TEXT, metric TEXT, spec TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS plan (
    plan TEXT NOT NULL, pos INTEGER NOT NULL, unit TEXT NOT NULL, PRIMARY KEY (plan, pos));
CREATE TABLE IF NOT EXISTS scores (
    unit TEXT NOT NULL, sample INTEGER NOT NULL, score REAL NOT NULL,
    PRIMARY KEY (unit, sample));
CREATE TABLE IF NOT EXISTS curves (
    unit TEXT NOT NULL, sample INTEGER NOT NULL, x TEXT NOT NULL, y TEXT NOT NULL,
    PRIMARY KEY (unit, sample));
CREATE TABLE IF NOT EXISTS artefacts (key TEXT PRIMARY KEY, kind TEXT NOT NULL,
    value BLOB NOT NULL);
"""

_TABLES = ("units", "plan", "scores", "curves", "artefacts")


class ResultStore:
    """An experiment store at ``path`` (created with its tables if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
        try:
            old = {r[1] for r in self.db.execute("PRAGMA table_info(scores)")}
        except sqlite3.DatabaseError as err:  # truncated or not a store at all
            self.db.close()
            raise ValueError(f"{self.path} is not a readable results store ({err}); move it "
                             "away, use another --out, or --fresh to start over") from err
        if "method" in old:
            self.db.close()
            raise ValueError(f"{self.path} was written by an older attrlab (scores keyed by "
                             "method/metric); use another --out or --fresh")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- run-level information --------------------------------------------------------------
    def set_info(self, key: str, value: Any) -> None:
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO run VALUES (?, ?)", (key, json.dumps(value)))

    def info(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM run WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # -- plans --------------------------------------------------------------------------------
    def set_plan(self, plan: Plan) -> None:
        """Record ``plan`` (all its units, in order) and make it the current plan."""
        keys = plan.keys()
        with self.db:
            if not self.db.execute("SELECT 1 FROM plan WHERE plan = ? LIMIT 1",
                                   (plan.key,)).fetchone():
                self.db.executemany("INSERT INTO plan VALUES (?, ?, ?)",
                                    [(plan.key, i, k) for i, k in enumerate(keys)])
            self.db.executemany(
                "INSERT OR IGNORE INTO units VALUES (?, ?, ?, ?, ?)",
                [(u.key, u.kind, u.method_name, u.metric_name, json.dumps(u.spec()))
                 for u in plan.units])
            self.db.execute("INSERT OR REPLACE INTO run VALUES ('plan', ?)",
                            (json.dumps(plan.key),))

    def plan_keys(self, plan: str | None = None) -> list[str] | None:
        """Unit keys of ``plan`` (default: the current one; None if no plan is recorded)."""
        plan = plan or self.info("plan")
        if plan is None:
            return None
        return [r[0] for r in self.db.execute(
            "SELECT unit FROM plan WHERE plan = ? ORDER BY pos", (plan,))]

    def _scope(self, all_units: bool) -> tuple[str, tuple]:
        """SQL condition on ``u.key`` selecting the current plan's units."""
        plan = None if all_units else self.info("plan")
        if plan is None:
            return "1", ()
        return "u.key IN (SELECT unit FROM plan WHERE plan = ?)", (plan,)

    # -- units, scores and curves -------------------------------------------------------------
    def put(self, unit: Unit, result: Result) -> None:
        """Store one unit's per-sample scores (and curves) atomically."""
        if result.key != unit.key:
            raise ValueError(f"result for unit {result.key[:12]} given for {unit!r}")
        if len(result.scores) != len(result.samples):
            raise ValueError(f"{unit!r}: {len(result.scores)} scores for "
                             f"{len(result.samples)} samples")
        with self.db:
            self.db.execute("INSERT OR IGNORE INTO units VALUES (?, ?, ?, ?, ?)",
                            (unit.key, unit.kind, unit.method_name, unit.metric_name,
                             json.dumps(unit.spec())))
            self.db.executemany("INSERT OR REPLACE INTO scores VALUES (?, ?, ?)",
                                [(unit.key, int(s), float(v))
                                 for s, v in zip(result.samples, result.scores)])
            if result.curve is not None:
                x, ys = result.curve
                if len(ys) != len(result.samples):
                    raise ValueError(f"{unit!r}: {len(ys)} curves for "
                                     f"{len(result.samples)} samples")
                xs = json.dumps([float(v) for v in x])
                self.db.executemany(
                    "INSERT OR REPLACE INTO curves VALUES (?, ?, ?, ?)",
                    [(unit.key, int(s), xs, json.dumps([float(v) for v in y]))
                     for s, y in zip(result.samples, ys)])

    def add(self, method: str, metric: str, samples: Sequence[int], scores: Sequence[float],
            curve: tuple[Sequence[float], Sequence[Sequence[float]]] | None = None,
            context: Any = None) -> Unit:
        """Store scores of ``(method, metric)`` on ``samples`` as an ad-hoc unit (kind
        ``"adhoc"``, identified by the names, the samples and ``context``); returns it."""
        unit = Unit("adhoc", {}, {}, tuple(samples), {"name": method, "options": {}},
                    {"name": metric, "options": {}}, 0, {"context": context})
        c = None if curve is None else (tuple(curve[0]), tuple(tuple(y) for y in curve[1]))
        self.put(unit, Result(unit.key, unit.samples, tuple(float(v) for v in scores), c))
        return unit

    def done(self, key: str | Unit) -> bool:
        """True if the unit (or unit key) has its scores stored."""
        key = key.key if isinstance(key, Unit) else key
        return self.db.execute("SELECT 1 FROM scores WHERE unit = ? LIMIT 1",
                               (key,)).fetchone() is not None

    def done_keys(self) -> set[str]:
        """Keys of every unit with stored scores."""
        return {r[0] for r in self.db.execute("SELECT DISTINCT unit FROM scores")}

    def units(self, all_units: bool = False) -> list[Unit]:
        """The units of the current plan that have a row (every stored unit with
        ``all_units=True``)."""
        where, args = self._scope(all_units)
        return [Unit.from_spec(json.loads(r[0])) for r in self.db.execute(
            f"SELECT spec FROM units u WHERE {where} ORDER BY key", args)]

    def scores(self, all_units: bool = False) -> list[tuple[str, str, int, float]]:
        """(method, metric, sample, score) rows of the current plan's units, ordered."""
        where, args = self._scope(all_units)
        return self.db.execute(
            "SELECT u.method, u.metric, s.sample, s.score FROM scores s JOIN units u "
            f"ON s.unit = u.key WHERE {where} ORDER BY u.method, u.metric, s.sample",
            args).fetchall()

    def unit_scores(self, key: str) -> list[tuple[int, float]]:
        """(sample, score) rows of one unit, by sample."""
        return self.db.execute("SELECT sample, score FROM scores WHERE unit = ? "
                               "ORDER BY sample", (key,)).fetchall()

    def curves(self, metric: str, all_units: bool = False
               ) -> dict[str, tuple[list[float], list[list[float]]]]:
        """Per method: the x axis and the per-sample curves of ``metric`` (current plan)."""
        where, args = self._scope(all_units)
        out: dict[str, tuple[list[float], list[list[float]]]] = {}
        for method, x, y in self.db.execute(
                "SELECT u.method, c.x, c.y FROM curves c JOIN units u ON c.unit = u.key "
                f"WHERE u.metric = ? AND {where} ORDER BY u.method, c.sample",
                (metric, *args)):
            xs, ys = out.setdefault(method, (json.loads(x), []))
            ys.append(json.loads(y))
        return out

    def curve_metrics(self, all_units: bool = False) -> list[str]:
        where, args = self._scope(all_units)
        return [r[0] for r in self.db.execute(
            "SELECT DISTINCT u.metric FROM curves c JOIN units u ON c.unit = u.key "
            f"WHERE {where} ORDER BY u.metric", args)]

    def progress(self) -> tuple[int, int]:
        """(done, total) units of the current plan."""
        keys = self.plan_keys()
        if keys is None:
            return len(self.done_keys()), len(self.done_keys())
        done = self.done_keys()
        return sum(k in done for k in keys), len(keys)

    # -- artefacts ------------------------------------------------------------------------------
    def put_artefact(self, key: str | Any, value: Any, kind: str = "torch") -> str:
        """Store ``value`` under ``key`` (a string, or any JSON-able spec, hashed by content):
        kind ``"torch"`` (``torch.save`` bytes of tensors/containers) or ``"json"``."""
        key = key if isinstance(key, str) else content_key(key)
        if kind == "torch":
            import torch
            buf = io.BytesIO()
            torch.save(value, buf)
            blob = buf.getvalue()
        elif kind == "json":
            blob = json.dumps(value).encode()
        else:
            raise ValueError(f"artefact kind must be 'torch' or 'json', got {kind!r}")
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO artefacts VALUES (?, ?, ?)",
                            (key, kind, blob))
        return key

    def artefact(self, key: str | Any, default: Any = None) -> Any:
        """The artefact stored under ``key`` (``torch.load(weights_only=True)`` for torch
        artefacts), or ``default``."""
        key = key if isinstance(key, str) else content_key(key)
        row = self.db.execute("SELECT kind, value FROM artefacts WHERE key = ?",
                              (key,)).fetchone()
        if row is None:
            return default
        kind, blob = row
        if kind == "json":
            return json.loads(blob)
        import torch
        return torch.load(io.BytesIO(blob), weights_only=True)

    def has_artefact(self, key: str | Any) -> bool:
        key = key if isinstance(key, str) else content_key(key)
        return self.db.execute("SELECT 1 FROM artefacts WHERE key = ?",
                               (key,)).fetchone() is not None


def _describe(db: sqlite3.Connection, schema: str, key: str) -> str:
    row = db.execute(f"SELECT kind, method, metric, spec FROM {schema}.units WHERE key = ?",
                     (key,)).fetchone()
    if row is None:
        return f"unit {key[:12]}"
    samples = json.loads(row[3]).get("samples") or []
    span = f"samples {samples[0]}..{samples[-1]}" if samples else "no samples"
    return f"unit {key[:12]} ({row[0]}: {row[1]} x {row[2]}, {span})"


def merge(paths: Sequence[str | Path], out: str | Path) -> Path:
    """Combine the stores ``paths`` into a new store ``out`` (e.g. the shards of one sweep).

    Units, plans, scores, curves and artefacts are united; rows present in several inputs must
    be identical (a conflicting score, curve or artefact is a ``ValueError`` naming the unit).
    Run information comes from the first input; the current plan is the first input's if all
    inputs share it, else a new plan of all their plans' units (in input order)."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("merge needs at least one store")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"no store at {p}")
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out} exists; merge writes a new store")
    plans = []
    with ResultStore(out) as dst:
        db = dst.db
        try:
            for n, p in enumerate(paths):
                ResultStore(p).close()  # refuses stores of an older layout
                db.execute("ATTACH DATABASE ? AS src", (str(p),))
                try:
                    conflicts = [
                        ("score", "SELECT a.unit FROM src.scores a JOIN scores b USING (unit, "
                         "sample) WHERE a.score IS NOT b.score LIMIT 1"),
                        ("curve", "SELECT a.unit FROM src.curves a JOIN curves b USING (unit, "
                         "sample) WHERE a.x IS NOT b.x OR a.y IS NOT b.y LIMIT 1"),
                        ("unit spec", "SELECT a.key FROM src.units a JOIN units b USING (key) "
                         "WHERE a.spec IS NOT b.spec LIMIT 1"),
                        ("artefact", "SELECT a.key FROM src.artefacts a JOIN artefacts b "
                         "USING (key) WHERE a.value IS NOT b.value OR a.kind IS NOT b.kind "
                         "LIMIT 1")]
                    for what, q in conflicts:
                        row = db.execute(q).fetchone()
                        if row:
                            name = (_describe(db, "src", row[0]) if what != "artefact"
                                    else f"artefact {row[0]}")
                            raise ValueError(f"cannot merge {p}: its {what} of {name} differs "
                                             "from an earlier input's")
                    with db:
                        for t in _TABLES:
                            db.execute(f"INSERT OR IGNORE INTO {t} SELECT * FROM src.{t}")
                        if n == 0:
                            db.execute("INSERT OR REPLACE INTO run SELECT * FROM src.run")
                    row = db.execute("SELECT value FROM src.run WHERE key = 'plan'").fetchone()
                    if row:
                        plans.append(json.loads(row[0]))
                finally:
                    db.execute("DETACH DATABASE src")
            if len(set(plans)) > 1:
                keys: list[str] = []
                seen: set[str] = set()
                for plan in dict.fromkeys(plans):
                    for k in dst.plan_keys(plan):
                        if k not in seen:
                            seen.add(k)
                            keys.append(k)
                key = content_key(keys)
                with db:
                    db.execute("DELETE FROM plan WHERE plan = ?", (key,))
                    db.executemany("INSERT INTO plan VALUES (?, ?, ?)",
                                   [(key, i, k) for i, k in enumerate(keys)])
                dst.set_info("plan", key)
            dst.set_info("merged_from", [str(p) for p in paths])
            dst.set_info("shard", None)
        except BaseException:
            dst.close()
            out.unlink(missing_ok=True)
            raise
    return out


__all__ = ["ResultStore", "merge"]
