"""Run the notebooks' closing checks over seeds and torch thread counts; write the margins table.

Usage:
    python tools/check_margins.py [--seeds 0-4] [--threads 1 2] [--out build/margins]
                                  [--table benchmarks/margins.md] [notebooks/0X_....ipynb ...]

Each (notebook, seed, threads) run executes the whole notebook in FAST mode in a fresh kernel with
an empty model cache of its own (as a new user would), ``XAIBIAS_SEED`` set to the seed and
``OMP_NUM_THREADS`` to the thread count. Every :func:`xaibias.findings.check` and
:func:`~xaibias.findings.observe` of the run is appended to ``<out>/<notebook>-s<seed>-t<threads>.jsonl``.
A run whose file ends with its ``done`` line is not repeated (delete the file to rerun it).
Every comparison (:func:`xaibias.findings.compare`) and validity gate of a run is recorded there too;
``--verdicts FILE`` writes them as the verdict sheet (each printed verdict with its numbers, per run).

The table lists, per notebook and quantity, the bound, the smallest and largest value over the
runs, the smallest margin and how many runs passed; observations (not asserted) show their range.
Runs with one thread go two at a time on a 2-core machine (``--jobs``); two-thread runs go alone.
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
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from xaibias.config import parse_seeds  # one seed syntax for every tool

ROOT = Path(__file__).resolve().parents[1]


def run_one(nb: Path, seed: int, threads: int, out: Path, timeout: int) -> dict:
    """Execute ``nb`` once; return a summary row. Findings go to the run's JSONL file."""
    findings = out.resolve() / f"{nb.stem}-s{seed}-t{threads}.jsonl"  # the kernel runs in notebooks/
    runs = [json.loads(line) for line in findings.read_text().splitlines() if '"kind": "run"' in line] \
        if findings.is_file() else []
    if runs and runs[-1].get("ok"):
        return {"notebook": nb.stem, "seed": seed, "threads": threads, "ok": True, "seconds": None,
                "reused": True}
    findings.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory(prefix="xaibias-margins-") as cache:
        env = dict(os.environ, XAIBIAS_FAST="1", XAIBIAS_HEADLESS="1", XAIBIAS_SEED=str(seed),
                   OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), XAIBIAS_CACHE=cache,
                   XAIBIAS_FINDINGS=str(findings), XAIBIAS_NOTEBOOK=nb.stem, MPLBACKEND="Agg")
        start = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, str(ROOT / "tools" / "run_notebooks.py"), "--out", str(out / "executed"
             / f"s{seed}-t{threads}"), "--timeout", str(timeout), str(nb)],
            env=env, capture_output=True, text=True,
        )
        seconds = time.perf_counter() - start
    ok = proc.returncode == 0
    # run_notebooks prints the failing cell's error indented under the notebook's line
    error = "" if ok else [line.strip() for line in proc.stdout.splitlines() if line.startswith("    ")][-3:] or \
        (proc.stdout.strip().splitlines() or ["?"])[-3:]
    with open(findings, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"kind": "run", "ok": ok, "seconds": round(seconds, 1), "error": error,
                             "status": "done"}) + "\n")
    return {"notebook": nb.stem, "seed": seed, "threads": threads, "ok": ok, "seconds": round(seconds, 1),
            "error": error}


def load_findings(out: Path) -> list[dict]:
    """All finding rows of all runs in ``out`` (run rows excluded), with the run's file name."""
    rows = []
    for f in sorted(out.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("kind") in ("check", "observation"):
                row["run"] = f.stem
                row["notebook"] = row.get("notebook") or f.stem.rsplit("-s", 1)[0]
                rows.append(row)
    return rows


def load_verdicts(out: Path) -> list[dict]:
    """Every comparison and validity gate that the runs in ``out`` printed, with the run's file name."""
    rows = []
    for f in sorted(out.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            if row.get("kind") in ("comparison", "gate"):
                row["run"] = f.stem
                row["notebook"] = row.get("notebook") or f.stem.rsplit("-s", 1)[0]
                rows.append(row)
    return rows


def verdict_sheet(rows: list[dict]) -> str:
    """The Markdown verdict sheet: per notebook, every printed verdict and gate of every run with its numbers.

    The first table counts, per verdict, the words it got over the runs (a verdict whose word changes
    between seeds is one to state with care); the second lists each run's word beside the effect,
    its interval and the two sides it compares, so a reader can check every verdict against its numbers.
    """
    if not rows:
        return "No verdicts were recorded (no notebook called xb.findings.compare or a gate).\n"

    def cell(x) -> str:
        if x is None:
            return ""
        if isinstance(x, list):
            return f"{_fmt(x[0])} [{_fmt(x[1])}, {_fmt(x[2])}]"
        return _fmt(x) if isinstance(x, (int, float)) else str(x)

    counts: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        word = r["word"] if r["kind"] == "comparison" else ("valid" if r["ok"] else "flagged")
        counts[(r["notebook"], r["kind"], r["name"])][word] += 1
    out = ["## Words over the runs", "", "| notebook | verdict or gate | words (runs) |", "| --- | --- | --- |"]
    for (nb, kind, name), words in counts.items():
        label = name.replace("|", "\\|") + (" (gate)" if kind == "gate" else "")
        out.append(f"| {nb} | {label} | " + ", ".join(f"{w} ({n})" for w, n in sorted(words.items())) + " |")
    out += ["", "## Every verdict with its numbers", "",
            "| notebook | run | verdict or gate | word | effect [interval] | A | B |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        run = f"seed {r.get('seed')}, {r.get('threads')} thr."
        name = r["name"].replace("|", "\\|")
        if r["kind"] == "comparison":
            effect = f"{r['effect']} {_fmt(r['value'])} [{_fmt(r['low'])}, {_fmt(r['high'])}]"
            out.append(f"| {r['notebook']} | {run} | {name} | {r['word']} | {effect} | "
                       f"{r['a_label']} {cell(r['a'])} | {r['b_label']} {cell(r['b'])} |")
        else:
            line = r["line"].replace("|", "\\|")
            out.append(f"| {r['notebook']} | {run} | {name} ({r['what']} gate) | {'valid' if r['ok'] else 'flagged'} "
                       f"| {line} | | |")
    return "\n".join(out) + "\n"


def load_runs(out: Path) -> list[dict]:
    runs = []
    for f in sorted(out.glob("*.jsonl")):
        for line in f.read_text().splitlines():
            if line.strip() and json.loads(line).get("kind") == "run":
                row = json.loads(line)
                row["run"] = f.stem
                runs.append(row)
    return runs


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def margins_table(rows: list[dict], runs: list[dict]) -> str:
    """The Markdown margins table of ``rows`` (finding dicts) over ``runs`` (run summary dicts)."""
    by_key: dict[tuple, list[dict]] = defaultdict(list)
    order: list[tuple] = []
    for r in rows:
        key = (r["notebook"], r["kind"], r["name"], r.get("op"), r.get("bound"))
        if key not in by_key:
            order.append(key)
        by_key[key].append(r)
    runs_per_nb: dict[str, set] = defaultdict(set)
    failed_runs: dict[str, list] = defaultdict(list)
    for run in runs:
        nb = run["run"].rsplit("-s", 1)[0]
        runs_per_nb[nb].add(run["run"])
        if not run.get("ok"):
            failed_runs[nb].append(run["run"])
    for r in rows:  # a run cut off after its checks has findings but no run row
        runs_per_nb[r["notebook"]].add(r["run"])
    lines = ["| notebook | finding | asserted | min | max | smallest margin | runs passed |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for key in sorted(order, key=lambda k: (k[0], k[1] != "check", order.index(k))):
        nb, kind, name, op, bound = key
        name = name.replace("|", "\\|")  # a pipe in a finding's name would end its table cell
        vals = by_key[key]
        total = len(runs_per_nb.get(nb, ())) or len(vals)
        lo = min(v["value"] for v in vals)
        hi = max(v["value"] for v in vals)
        if kind == "check":
            margin = min(v["margin"] for v in vals)
            passed = sum(bool(v["passed"]) for v in vals)
            lines.append(f"| {nb} | {name} | {op} {_fmt(bound)} | {_fmt(lo)} | {_fmt(hi)} | {_fmt(margin)} | "
                         f"{passed}/{total} |")
        else:
            lines.append(f"| {nb} | {name} | observed, not asserted | {_fmt(lo)} | {_fmt(hi)} | | {len(vals)} runs |")
    for nb, bad in sorted(failed_runs.items()):
        lines.append(f"| {nb} | **runs that did not finish** | | | | | {', '.join(bad)} |")
    return "\n".join(lines) + "\n"


def written_by(args: argparse.Namespace, output: str) -> str:
    """The command behind a written file; for ``--table-only``, the runs found in ``--out`` instead of
    the default seeds and threads (which did not make them)."""
    if not args.table_only:
        return (f"`python tools/check_margins.py --seeds {','.join(map(str, args.seeds))} "
                f"--threads {' '.join(map(str, args.threads))} {output}`")
    runs = sorted({m.groups() for f in Path(args.out).glob("*.jsonl")
                   if (m := re.fullmatch(r"(.+)-s(\d+)-t(\d+)\.jsonl", f.name))})
    notebooks = sorted({nb for nb, _, _ in runs})
    listed = "; ".join(f"{nb}: " + ", ".join(f"seed {s} x {t} thread(s)" for n, s, t in runs if n == nb)
                       for nb in notebooks)
    return f"`python tools/check_margins.py --table-only {output}` from the runs in `{args.out}` ({listed or 'none'})"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--seeds", default="0-4", type=parse_seeds)
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--jobs", type=int, default=None,
                    help="runs at a time (default: cores // threads, at least 1)")
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "margins")
    ap.add_argument("--table", type=Path, default=None, help="write the Markdown table here as well")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    ap.add_argument("--verdicts", type=Path, default=None,
                    help="write the verdict sheet (every printed comparison and gate of every run) here")
    ap.add_argument("--table-only", action="store_true", help="only rebuild the table from --out")
    args = ap.parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    paths = [p.resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    if not args.table_only:
        cores = os.cpu_count() or 1
        for threads in args.threads:
            jobs = args.jobs or max(1, cores // threads)
            todo = [(nb, s, threads) for nb in paths for s in args.seeds]
            print(f"{len(todo)} run(s) with {threads} thread(s), {jobs} at a time", flush=True)
            with ThreadPoolExecutor(jobs) as pool:
                for row in pool.map(lambda t: run_one(*t, args.out, args.timeout), todo):
                    state = "reused" if row.get("reused") else ("ok" if row["ok"] else "FAILED")
                    secs = "" if row["seconds"] is None else f" in {row['seconds']:.0f} s"
                    print(f"  {row['notebook']} seed {row['seed']} threads {threads}: {state}{secs}", flush=True)
                    if row.get("error"):
                        print("    " + "\n    ".join(row["error"]), flush=True)
    table = margins_table(load_findings(args.out), load_runs(args.out))
    print("\n" + table)
    if args.table:
        args.table.write_text(
            "# Margins of the notebooks' findings\n\n"
            f"Written by {written_by(args, f'--table {args.table}')} "
            "(FAST mode, an empty model cache per run). *min*/*max*: the measured value over all runs; "
            "*smallest margin*: how far the worst run's tested value (the near end of its interval, where "
            "the check uses one) clears the bound.\n\n" + table)
    if args.verdicts:
        args.verdicts.write_text(
            f"# Verdict sheet\n\nWritten by {written_by(args, f'--verdicts {args.verdicts}')} "
            "(FAST mode, an empty model cache per run): every sentence a notebook printed "
            "through `xb.findings.compare` and every validity gate, with the numbers it rests on.\n\n"
            + verdict_sheet(load_verdicts(args.out)))
    fails = [r for r in load_findings(args.out) if r["kind"] == "check" and not r["passed"]]
    bad_runs = [r for r in load_runs(args.out) if not r.get("ok")]
    return 0 if not fails and not bad_runs else 1


if __name__ == "__main__":
    sys.exit(main())
