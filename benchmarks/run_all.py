"""Run every benchmark in quick settings and print one table of goals, figures and verdicts.

Each benchmark runs as its own process, one after the other (they would disturb each other's
timings side by side), and its own output is shown as it comes. Then one table sums them up:
benchmark, goal, measured, met?. bench_wrapper, bench_limiter, bench_quota, bench_panel,
bench_bad_days, bench_refresh and bench_pgstore hand their results over as JSON (``--json
FILE``); the figures of bench_simulator, bench_decode and bench_harvest are read from the tables
they print, with the goals their docstrings state. The whole run takes about four to five
minutes on the project's 2-core machine; bench_wrapper needs TikTok's wrapper (``pip install
TikTokResearchApi``) and bench_pgstore PostgreSQL's binaries (it starts a throwaway server), and
each is reported as not run without them.

    python benchmarks/run_all.py [--only NAME ...]

The exit status is 1 if a benchmark could not run or its output could not be read, else 0: a
goal not met shows in the table, not in the exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TIMEOUT = 300.0

Result = dict[str, Any]


@dataclass(frozen=True)
class Section:
    """One benchmark: its script, the arguments that keep it quick, and how to read it."""

    name: str
    args: tuple[str, ...]
    parse: Callable[[str], list[Result]] | None  # None: it writes --json


def row(benchmark: str, goal: str, measured: str, met: bool | None) -> Result:
    """Return one line of the summary table."""
    return {"benchmark": benchmark, "goal": goal, "measured": measured, "met": met}


def parse_simulator(out: str) -> list[Result]:
    """Read bench_simulator's req/s of the cached simulator and its ratio to the baseline."""
    ratio = re.search(r"simulator / baseline: ([\d.]+) of the requests/s", out)
    cached = re.search(r"simulator: cached users\s+([\d,]+)", out)
    if not ratio or not cached:
        return []
    return [
        row(
            "simulator: 100-video pages, 32 connections",
            "(info)",
            f"{cached[1]} req/s, {ratio[1]}x a fixed-body aiohttp server",
            None,
        )
    ]


def parse_decode(out: str) -> list[Result]:
    """Read bench_decode's own verdict lines."""
    return [
        row(f"decode: {m[1]}", f"typed >= {m[0]} json.loads", m[3], m[2] == "met")
        for m in re.findall(
            r"^goal typed >= (\S+) json\.loads, (.+): (met|NOT met) \((.+)\)$", out, re.M
        )
    ]


def parse_harvest(out: str) -> list[Result]:
    """Read bench_harvest's tables against the goals its docstring states."""
    rows = []
    cpu = {
        name: ratio
        for name, ratio, _ in re.findall(
            r"^\| (\S.*?)\s+\| [\d,]+ pages/s\s+\| ([\d.]+)x\s+\|(?: ([\d.]+)x\s+\|)?$", out, re.M
        )
    }
    for name, goal in (
        ("RepostClient.pages()", 0.8),
        ("RepostClient.walk_many()", 0.8),
        ("harvest into SQLite", 0.7),
    ):
        if name in cpu:
            ratio = float(cpu[name])
            rows.append(
                row(
                    f"harvest CPU: {name}, zero latency",
                    f">= {goal}x bare",
                    f"{ratio:.2f}x",
                    ratio >= goal,
                )
            )
    for concurrency, ratio in re.findall(
        r"^\| harvest, concurrency (\d+)\s+\|.*= ([\d.]+)x \|$", out, re.M
    ):
        rows.append(
            row(
                f"harvest latency hiding, 100 ms, concurrency {concurrency}",
                "<= 1.15x ideal",
                f"{ratio}x",
                float(ratio) <= 1.15,
            )
        )
    rss = [
        (n, int(mb))
        for n, mb in re.findall(r"^\| harvest of ([\d,]+) names\s+\| peak RSS (\d+) MB", out, re.M)
    ]
    if rss:
        (first_n, first), (last_n, last) = rss[0], rss[-1]
        rows.append(
            row(
                f"harvest peak RSS, {first_n} to {last_n} names",
                "<= 200 MB, flat (last <= 1.2x first)",
                f"{first} MB to {last} MB",
                max(mb for _, mb in rss) <= 200 and last <= 1.2 * first,
            )
        )
    return rows


SECTIONS = [
    Section("bench_simulator", ("--seconds", "3"), parse_simulator),
    Section("bench_decode", ("--repeat", "60"), parse_decode),
    Section("bench_harvest", ("--quick",), parse_harvest),
    Section("bench_wrapper", ("--rounds", "1"), None),
    Section("bench_limiter", ("--seconds", "8"), None),
    Section("bench_quota", (), None),
    Section("bench_panel", (), None),
    Section("bench_bad_days", (), None),
    Section("bench_refresh", ("--users", "100"), None),
    # Starts a throwaway PostgreSQL server from the system's binaries: see its docstring.
    Section("bench_pgstore", ("--quick",), None),
]


def run(section: Section, folder: Path) -> tuple[list[Result], str | None, float]:
    """Run one benchmark, echoing its output; return its rows, an error if it failed, and time."""
    command = [sys.executable, str(HERE / f"{section.name}.py"), *section.args]
    results = folder / f"{section.name}.json"
    if section.parse is None:
        command += ["--json", str(results)]
    print(f"\n== {section.name} ({' '.join(section.args) or 'defaults'}) ==", flush=True)
    started = time.perf_counter()
    lines: list[str] = []
    with (folder / f"{section.name}.err").open("w+") as errors:
        # Unbuffered, so that its lines show as they come rather than when it ends.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=errors, text=True, env=env
        )
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            lines.append(line)
        try:
            code = process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            code = process.wait()
        errors.seek(0)
        tail = errors.read().strip().splitlines()[-1:]
    seconds = time.perf_counter() - started
    if code != 0:
        return [], f"exit {code}: {tail[0] if tail else 'no message'}", seconds
    if section.parse is not None:
        rows = section.parse("".join(lines))
        return rows, None if rows else "ran, but its output could not be read", seconds
    return json.loads(results.read_text())["results"], None, seconds


def summary(rows: list[Result]) -> None:
    """Print the combined table."""
    verdict = {True: "yes", False: "NO", None: "-"}
    table = [["benchmark", "goal", "measured", "met?"]]
    table += [[r["benchmark"], r["goal"], r["measured"], verdict[r["met"]]] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(4)]
    for i, line in enumerate(table):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")


def main() -> None:
    """Run the benchmarks, then print the summary table and the total time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [s.name for s in SECTIONS]
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=", ".join(names))
    args = parser.parse_args()
    started = time.perf_counter()
    rows: list[Result] = []
    failed = False
    with tempfile.TemporaryDirectory() as folder:
        for section in SECTIONS:
            if args.only and section.name not in args.only:
                continue
            results, error, seconds = run(section, Path(folder))
            print(f"({section.name}: {seconds:.0f} s)", flush=True)
            rows += results
            if error is not None:
                failed = True
                rows.append(row(section.name, "runs", error, False))
    print(f"\nSummary ({time.strftime('%Y-%m-%d')}, python {sys.version.split()[0]})\n")
    summary(rows)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
