"""SQLite result store: one row per (method, metric, sample), written as it is computed, so
an interrupted run resumes without recomputing and a finished run can be re-reported."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, Iterable, Sequence

SCHEMA = """
CREATE TABLE IF NOT EXISTS run (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    method TEXT NOT NULL, metric TEXT NOT NULL, sample INTEGER NOT NULL, score REAL NOT NULL,
    PRIMARY KEY (method, metric, sample));
CREATE TABLE IF NOT EXISTS curves (
    method TEXT NOT NULL, metric TEXT NOT NULL, sample INTEGER NOT NULL,
    x TEXT NOT NULL, y TEXT NOT NULL, PRIMARY KEY (method, metric, sample));
"""


class ResultStore:
    """Results of one bench run in ``<out>/results.sqlite``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path)
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

    # -- scores and curves ------------------------------------------------------------------
    def add(self, method: str, metric: str, samples: Sequence[int], scores: Sequence[float],
            curve: tuple[Sequence[float], Sequence[Sequence[float]]] | None = None) -> None:
        """Store the scores (and optional per-sample curves) of one batch atomically."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO scores VALUES (?, ?, ?, ?)",
                [(method, metric, int(s), float(v)) for s, v in zip(samples, scores)])
            if curve is not None:
                x, ys = curve
                xs = json.dumps([float(v) for v in x])
                self.db.executemany(
                    "INSERT OR REPLACE INTO curves VALUES (?, ?, ?, ?, ?)",
                    [(method, metric, int(s), xs, json.dumps([float(v) for v in y]))
                     for s, y in zip(samples, ys)])

    def done(self, method: str, metric: str, samples: Iterable[int]) -> bool:
        """True if every sample of this batch already has a score for (method, metric)."""
        samples = [int(s) for s in samples]
        q = ("SELECT COUNT(*) FROM scores WHERE method = ? AND metric = ? AND sample IN (%s)"
             % ",".join("?" * len(samples)))
        return self.db.execute(q, (method, metric, *samples)).fetchone()[0] == len(samples)

    def scores(self) -> list[tuple[str, str, int, float]]:
        """All (method, metric, sample, score) rows, ordered."""
        return self.db.execute(
            "SELECT method, metric, sample, score FROM scores ORDER BY method, metric, sample"
        ).fetchall()

    def curves(self, metric: str) -> dict[str, tuple[list[float], list[list[float]]]]:
        """Per method: the x axis and the per-sample curves of ``metric``."""
        out: dict[str, tuple[list[float], list[list[float]]]] = {}
        for method, x, y in self.db.execute(
                "SELECT method, x, y FROM curves WHERE metric = ? ORDER BY method, sample",
                (metric,)):
            xs, ys = out.setdefault(method, (json.loads(x), []))
            ys.append(json.loads(y))
        return out

    def curve_metrics(self) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT DISTINCT metric FROM curves ORDER BY metric")]
