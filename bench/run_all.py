"""Run every benchmark at a quick size and keep a trail of the figures, so a regression shows.

    python bench/run_all.py                 # run, append to bench/trail.jsonl, compare with the last figures
    python bench/run_all.py --only deepshap # one bench script (by its name after bench_)
    python bench/run_all.py --markdown      # the latest figure of each kind as a Markdown table (runs nothing)
    python bench/run_all.py --tables        # that table written into README.md and docs/performance.md (runs nothing)
    python bench/run_all.py --full          # the issue-size runs instead (n = 200 and 1000; tens of minutes on a quiet machine)

Each bench script is run with ``--quick --json``; it prints its usual report
plus one ``BENCH_FIGURE {json}`` line per figure (``bench/_trail.py``): a
ratio *reference time / our time measured in the same run* (larger is
better), the reference's name, both times and the peak RSS. Every figure is
appended to ``bench/trail.jsonl`` (committed) with the commit, date, machine
(host, CPU, cores), torch threads and the load average (1 minute) at the
start and end of that script.

Regression rule (:data:`DROP`, :data:`QUIET_LOAD`): a figure whose ratio falls
by more than 30 % against the previous line for the same figure *on the same
machine* is a regression when both runs were quiet, i.e. their load average
per core stayed below 0.5 from start to end; the run then exits with status 1.
On a loaded machine (either run) the change is printed but marked unreliable:
the reference and ours share the machine with other work in different
proportions, so even ratios move by 2x there. A figure seen for the first time,
or last seen on another machine, is printed without a comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TRAIL = HERE / "trail.jsonl"
MARK = "BENCH_FIGURE "

#: a ratio falling by more than this share is a regression (on a quiet machine)
DROP = 0.30
#: load average per core below which a run counts as quiet
QUIET_LOAD = 0.5

#: bench script -> arguments for the quick run (each adds --json)
BENCHES: dict[str, list[str]] = {
    "deepshap": ["--quick"],
    "gradients": ["--quick"],
    "dependence": ["--quick"],
    "perturbation": ["--quick"],
}

#: ``--full``: the issue-size runs (n = 200 and 1000); their figures go to the same trail
FULL: dict[str, list[str]] = {
    "deepshap": ["--reference-only", "--sizes", "200", "1000", "--shap-samples", "10", "--profile"],
    "gradients": ["--jacobian-only", "--n", "200", "1000"],
    "dependence": ["--n", "200", "--ref-latents", "5"],
    "perturbation": ["--n", "1000", "--repeats", "3", "--auto-only"],
}


def machine() -> dict[str, Any]:
    """Where the figures were measured: host, CPU model, cores."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count() or 1}


def commit() -> str:
    """The short commit of the tree, with ``+dirty`` when tracked files differ from it."""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE, capture_output=True, text=True
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def load_per_core() -> float:
    return os.getloadavg()[0] / (os.cpu_count() or 1)


def read_trail(path: Path = TRAIL) -> list[dict[str, Any]]:
    """Every record of the trail, oldest first (blank or broken lines skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def quiet(record: dict[str, Any]) -> bool:
    """Whether the record's run stayed below :data:`QUIET_LOAD` load per core from start to end."""
    return max(record.get("load_per_core_start", 1e9), record.get("load_per_core_end", 1e9)) < QUIET_LOAD


def compare(previous: list[dict[str, Any]], record: dict[str, Any], drop: float = DROP) -> dict[str, Any]:
    """The change of ``record``'s ratio against the last record of the same figure in ``previous``.

    Returns ``{"status": ..., "change": ..., "before": ...}`` with status
    ``new`` (no earlier figure), ``other-machine``, ``ok``, ``regression``
    (a fall beyond ``drop`` on two quiet runs) or ``unreliable`` (a fall
    beyond ``drop`` with a loaded run on either side).
    """
    same = [r for r in previous if r.get("figure") == record["figure"]]
    if not same:
        return {"status": "new", "change": None, "before": None}
    last = same[-1]
    if last.get("machine", {}).get("cpu") != record.get("machine", {}).get("cpu") or last.get("machine", {}).get("cores") != record.get(
        "machine", {}
    ).get("cores"):
        return {"status": "other-machine", "change": None, "before": last}
    change = record["ratio"] / last["ratio"] - 1.0 if last.get("ratio") else None
    if change is None or change >= -drop:
        return {"status": "ok", "change": change, "before": last}
    return {"status": "regression" if quiet(last) and quiet(record) else "unreliable", "change": change, "before": last}


def describe(record: dict[str, Any], verdict: dict[str, Any]) -> str:
    head = f"{record['figure']:<52} {record['ratio']:>9.2f}x  (load/core {record['load_per_core_start']:.2f}-{record['load_per_core_end']:.2f})"
    if verdict["status"] == "new":
        return head + "  first figure"
    if verdict["status"] == "other-machine":
        return head + "  last measured on another machine: not compared"
    before, change = verdict["before"], verdict["change"]
    line = head + f"  was {before['ratio']:.2f}x at {before.get('commit', '?')} ({change:+.0%})"
    if verdict["status"] == "regression":
        return line + f"  REGRESSION: fell more than {DROP:.0%} on a quiet machine"
    if verdict["status"] == "unreliable":
        return line + f"  fell more than {DROP:.0%}, but a run was loaded (load/core >= {QUIET_LOAD}): unreliable, rerun on a quiet machine"
    if not (quiet(before) and quiet(record)):
        return line + "  (loaded machine: comparison unreliable)"
    return line


def parse_figures(output: str) -> list[dict[str, Any]]:
    """The ``BENCH_FIGURE`` records in a script's output."""
    return [json.loads(line[len(MARK) :]) for line in output.splitlines() if line.startswith(MARK)]


def run_script(name: str, args: list[str], timeout: float) -> tuple[list[dict[str, Any]], str, float, float]:
    """Run ``bench_<name>.py`` with ``args --json``: its figures, its output, and the load per core before and after."""
    before = load_per_core()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / f"bench_{name}.py"), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=HERE.parent,
        )
        output = proc.stdout + (f"\n[exit {proc.returncode}]\n" + proc.stderr[-2000:] if proc.returncode else "")
    except subprocess.TimeoutExpired as exc:
        output = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        output += f"\n[timed out after {timeout:.0f} s]"
    return parse_figures(output), output, before, load_per_core()


def markdown(records: list[dict[str, Any]]) -> str:
    """The latest record of every figure as a Markdown table."""
    latest: dict[str, dict[str, Any]] = {}
    for r in records:
        latest[r["figure"]] = r
    lines = [
        "| figure | vs | ratio | ours (s) | reference (s) | peak RSS (MiB) | load/core | commit | date |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for fig in sorted(latest):
        r = latest[fig]
        ours = f"{r['ours_s']:.3g}" if r.get("ours_s") is not None else ""
        ref = f"{r['ref_s']:.3g}" if r.get("ref_s") is not None else ""
        load = f"{r.get('load_per_core_start', float('nan')):.2f}-{r.get('load_per_core_end', float('nan')):.2f}"
        lines.append(
            f"| {fig} | {r.get('reference', '')} | {r['ratio']:.2f}x | {ours} | {ref} | {r.get('peak_rss_mb', 0):.0f} | {load} | {r.get('commit', '')} | {r.get('date', '')[:10]} |"
        )
    return "\n".join(lines)


#: the markers around a generated table in a Markdown file (README.md, docs/performance.md)
TABLE_START, TABLE_END = "<!-- trail-table -->", "<!-- /trail-table -->"


def write_tables(records: list[dict[str, Any]], paths: list[Path]) -> None:
    """Replace the table between :data:`TABLE_START` and :data:`TABLE_END` in each file by :func:`markdown`'s."""
    table = markdown(records)
    for path in paths:
        text = path.read_text()
        start, end = text.find(TABLE_START), text.find(TABLE_END)
        if start < 0 or end < start:
            raise SystemExit(f"{path}: no {TABLE_START} ... {TABLE_END} markers to put the table between")
        path.write_text(text[: start + len(TABLE_START)] + "\n" + table + "\n" + text[end:])
        print(f"table of {table.count(chr(10)) - 1} figures written to {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHES), help="run only these bench scripts")
    ap.add_argument("--markdown", action="store_true", help="print the latest figures as a Markdown table and exit")
    ap.add_argument(
        "--tables",
        nargs="*",
        type=Path,
        metavar="FILE",
        help="write the latest figures' table between the trail-table markers of these files (default README.md and "
        "docs/performance.md) and exit",
    )
    ap.add_argument(
        "--full", action="store_true", help="the issue-size runs (FULL: n = 200 and 1000; tens of minutes) instead of the quick ones"
    )
    ap.add_argument("--trail", type=Path, default=TRAIL, help="the trail file (default bench/trail.jsonl)")
    ap.add_argument("--timeout", type=float, default=1800.0, help="seconds per bench script")
    ap.add_argument("--no-write", action="store_true", help="compare only; append nothing to the trail")
    args = ap.parse_args(argv)
    trail = read_trail(args.trail)
    if args.markdown:
        print(markdown(trail))
        return 0
    if args.tables is not None:
        write_tables(trail, args.tables or [HERE.parent / "README.md", HERE.parent / "docs" / "performance.md"])
        return 0
    meta = {"commit": commit(), "machine": machine(), "python": platform.python_version()}
    try:
        import torch

        meta["torch"], meta["torch_threads"] = torch.__version__, torch.get_num_threads()
    except ImportError:  # pragma: no cover
        pass
    regressions = 0
    table = FULL if args.full else BENCHES
    for name in args.only or list(table):
        start = time.perf_counter()
        figures, output, load0, load1 = run_script(name, table[name], args.timeout)
        print(
            f"== bench_{name}.py {' '.join(table[name])} --json: {len(figures)} figures in {time.perf_counter() - start:.0f} s", flush=True
        )
        if not figures:
            print(output[-3000:])
        for fig in figures:
            record = {
                **fig,
                **meta,
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "bench": f"bench_{name}.py",
                "load_per_core_start": round(load0, 2),
                "load_per_core_end": round(load1, 2),
            }
            verdict = compare(trail, record)
            regressions += verdict["status"] == "regression"
            print("  " + describe(record, verdict), flush=True)
            trail.append(record)
            if not args.no_write:
                with args.trail.open("a") as fh:
                    fh.write(json.dumps(record, sort_keys=True) + "\n")
    if regressions:
        print(f"{regressions} regression(s) beyond {DROP:.0%} on a quiet machine")
    return 1 if regressions else 0


if __name__ == "__main__":
    sys.exit(main())
