"""Shared helpers for the benchmark scripts: command line, machine description, timing, memory, tables, JSON.

Every ``bench_*.py`` script accepts ``--quick`` (tiny sizes, for the smoke test and a first look)
and ``--json PATH`` (parent folders are created), prints the machine it ran on and one Markdown
table, and writes ``{"benchmark", "quick", "machine", "columns", "rows", "summary", "notes"}``.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))


def parser(description: str) -> argparse.ArgumentParser:
    """Argument parser with the options every benchmark shares."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that the script runs, not speed")
    ap.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON here")
    return ap


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (or platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float] | None:
    """1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine(device: str | None = None) -> dict[str, Any]:
    """What the numbers were measured on: CPU, cores, torch threads, device, versions, load."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device,
        "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_average": load_average(),
        "mem_available_gb": mem_available_gb(),
    }
    return info


def describe_machine(info: dict[str, Any]) -> str:
    """One line for the console and the README."""
    dev = info["device"] + (f" ({info['gpu']})" if info.get("gpu") else "")
    load = info.get("load_average")
    return (f"{info['date_utc']} UTC | {info['cpu']} | {info['cores_usable']} cores usable, torch threads "
            f"{info['torch_threads']} | device {dev} | python {info['python']}, torch {info['torch']} | "
            f"load average {load if load else 'n/a'}")


# ------------------------------------------------------------------------------------------- timing


def sync(device: str) -> None:
    """Wait for queued GPU work so that wall-clock times are complete."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def interleaved_times(fns: dict[str, Callable[[], Any]], repeats: int, warmup: int = 1,
                      device: str = "cpu") -> dict[str, list[float]]:
    """Run every function ``repeats`` times in turn (round robin) and return the wall times.

    Interleaving spreads slow phases of a shared machine over all candidates instead of
    penalising whichever happens to run during them.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            sync(device)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            sync(device)
            t0 = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def timed(fn: Callable[[], Any], device: str = "cpu") -> tuple[float, Any]:
    """Wall time of one call and its result."""
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t0, out


# ------------------------------------------------------------------------------------------- memory


def _status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_mb() -> float | None:
    """Resident memory of this process now (MB), from /proc/self/status."""
    return _status_mb("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """Peak resident memory since the last :func:`reset_peak_rss` (or process start), in MB."""
    peak = _status_mb("VmHWM")
    if peak is None:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return peak


def mem_available_gb() -> float | None:
    """MemAvailable from /proc/meminfo in GB (None where unknown)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return round(int(line.split()[1]) / 1024.0**2, 1)
    except OSError:
        pass
    return None


# ------------------------------------------------------------------------------------------- output


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        a = abs(v)
        if a >= 100:
            return f"{v:,.0f}"
        if a >= 10:
            return f"{v:.1f}"
        if a >= 0.01 or a == 0:
            return f"{v:.2f}"
        return f"{v:.2g}"
    return str(v)


def table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """A Markdown table of ``rows``; ``columns`` is a list of (key, header)."""
    cells = [[_fmt(r.get(k)) for k, _ in columns] for r in rows]
    heads = [h for _, h in columns]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(heads)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in cells]
    return "\n".join(lines)


def report(name: str, args: argparse.Namespace, info: dict[str, Any], rows: list[dict[str, Any]],
           columns: Sequence[tuple[str, str]], summary: dict[str, Any] | None = None,
           notes: Sequence[str] = ()) -> dict[str, Any]:
    """Print the machine, the table, the summary and the notes; write JSON when asked."""
    info = {**info, "load_average_end": load_average()}
    print(f"\n## {name}{' (quick)' if args.quick else ''}\n")
    print("machine: " + describe_machine(info) + f"; load average at the end {info['load_average_end']}\n")
    print(table(rows, columns))
    if summary:
        print()
        for k, v in summary.items():
            print(f"- {k}: {_fmt(v) if not isinstance(v, (dict, list)) else json.dumps(v)}")
    for n in notes:
        print(f"- note: {n}")
    payload = {"benchmark": name, "quick": bool(args.quick), "machine": info,
               "columns": [{"key": k, "header": h} for k, h in columns], "rows": rows,
               "summary": summary or {}, "notes": list(notes)}
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2, default=float))
        print(f"\nwrote {args.json}")
    return payload


def loglog_slope(ns: Sequence[float], ts: Sequence[float]) -> float | None:
    """Growth exponent b of t ~ a * n^b from a least-squares fit in log-log space."""
    import numpy as np

    pts = [(n, t) for n, t in zip(ns, ts) if t is not None and t > 0 and n > 0]
    if len(pts) < 2:
        return None
    x = np.log([p[0] for p in pts])
    y = np.log([p[1] for p in pts])
    return float(np.polyfit(x, y, 1)[0])
