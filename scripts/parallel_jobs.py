"""Run several ``attrlab`` commands side by side (e.g. trainings sharing one GPU), each with
its own log, under one wall-clock budget, then pack the files they wrote into a few archives.

    python scripts/parallel_jobs.py JOBS_FILE --workdir DIR --budget SECONDS [--pack OUTDIR]

``JOBS_FILE`` holds one job per line, ``NAME[@LANE]: attrlab ARGS...`` (``#`` starts a
comment); each runs as ``python -m attrlab ARGS`` in ``DIR``. Lanes run side by side, the
jobs of one lane one after another in file order (a job without a lane has its own). A job still running when the budget ends
is stopped; since ``attrlab train`` saves a resumable ``.partial`` every epoch, the same file
run again continues where it stopped. ``--pack`` writes the logs and every ``*.pt`` /
``*.partial`` in ``DIR`` into tar files of at most ``--max-mb`` MB each.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tarfile
import time
from pathlib import Path


def read_jobs(path: Path) -> dict[str, list[tuple[str, list[str]]]]:
    """Jobs grouped by lane: {lane: [(name, argv), ...]}."""
    lanes: dict[str, list[tuple[str, list[str]]]] = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, cmd = line.partition(":")
        argv = shlex.split(cmd)
        if not argv or argv[0] != "attrlab":
            raise SystemExit(f"job {name!r}: command must start with 'attrlab'")
        name, _, lane = name.strip().partition("@")
        lanes.setdefault(lane or name, []).append((name, argv[1:]))
    return lanes


def pack(workdir: Path, outdir: Path, max_mb: float) -> None:
    files = sorted([*workdir.glob("*.pt"), *workdir.glob("*.partial"), *workdir.glob("*.log")],
                   key=lambda p: -p.stat().st_size)
    bins: list[list[Path]] = []
    sizes: list[int] = []
    for f in files:  # first-fit decreasing
        s = f.stat().st_size
        for i, used in enumerate(sizes):
            if used + s <= max_mb * 2**20:
                bins[i].append(f)
                sizes[i] += s
                break
        else:
            bins.append([f])
            sizes.append(s)
    outdir.mkdir(parents=True, exist_ok=True)
    for i, group in enumerate(bins):
        with tarfile.open(outdir / f"pack{i}.tar", "w") as tar:
            for f in group:
                tar.add(f, arcname=f.name)
        print(f"pack{i}.tar: {', '.join(f.name for f in group)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("jobs", type=Path)
    ap.add_argument("--workdir", type=Path, required=True)
    ap.add_argument("--budget", type=float, required=True, help="seconds for all jobs")
    ap.add_argument("--pack", type=Path, help="folder for the tar archives")
    ap.add_argument("--max-mb", type=float, default=15.5)
    args = ap.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    start = time.monotonic()
    lanes = read_jobs(args.jobs)
    running: dict[str, tuple[str, subprocess.Popen, object]] = {}
    done: list[tuple[str, int | None, float]] = []

    def launch(lane: str) -> None:
        if lanes[lane]:
            name, argv = lanes[lane].pop(0)
            log = open(args.workdir / f"{name}.log", "w")
            proc = subprocess.Popen([sys.executable, "-m", "attrlab", *argv], cwd=args.workdir,
                                    stdout=log, stderr=subprocess.STDOUT, env=env)
            running[lane] = (name, proc, log)

    for lane in lanes:
        launch(lane)
    while running:
        if time.monotonic() - start > args.budget:
            for _, proc, _ in running.values():
                proc.terminate()
            time.sleep(5)
        for lane, (name, proc, log) in list(running.items()):
            if proc.poll() is not None:
                log.close()
                done.append((name, proc.returncode, time.monotonic() - start))
                del running[lane]
                if time.monotonic() - start <= args.budget:
                    launch(lane)
        time.sleep(1)
    for lane, jobs in lanes.items():
        done.extend((name, None, 0.0) for name, _ in jobs)  # never started
    for name, rc, t in done:
        logf = args.workdir / f"{name}.log"
        last = logf.read_text().strip().splitlines()[-1:] if logf.exists() else ["not started"]
        print(f"{name}: rc={rc} at {t:.0f}s | {(last or [''])[0][-150:]}")
    if args.pack:
        pack(args.workdir, args.pack, args.max_mb)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
