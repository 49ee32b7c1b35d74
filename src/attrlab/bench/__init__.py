"""The evaluation harness: ``attrlab bench`` runs methods x metrics, stores every score as it
is computed (SQLite, resumable) and writes a leaderboard and an HTML report."""

from .report import format_leaderboard, leaderboard, write_report
from .runner import BenchConfig, resolve, run
from .store import ResultStore

__all__ = ["BenchConfig", "ResultStore", "format_leaderboard", "leaderboard", "resolve", "run",
           "write_report"]
