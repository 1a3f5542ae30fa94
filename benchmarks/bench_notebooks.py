"""Notebook budget: wall time of every notebook in FAST mode, executed as ``make notebooks`` does.

Each notebook runs in a fresh kernel through ``tools/run_notebooks.py``'s ``run`` function (imported
by path), with ``XAIBIAS_FAST=1``, ``XAIBIAS_HEADLESS=1`` and the Agg backend; the executed copies
go to ``build/bench_notebooks/`` (or ``--out``). Target (issue 9): all notebooks together under 15
minutes on the 2-core development machine.

``--quick`` executes one generated two-cell notebook instead (in a temporary folder): it checks the
machinery, not the budget. Notebooks can also be named on the command line.

Usage: python benchmarks/bench_notebooks.py [--quick] [--json PATH] [--out DIR] [notebooks/NN_x.ipynb ...]
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from pathlib import Path

from _common import ROOT, machine, parser, report

BUDGET_S = 15 * 60


def load_runner():
    """``tools/run_notebooks.py`` as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("run_notebooks", ROOT / "tools" / "run_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


def tiny_notebook(folder: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# bench_notebooks --quick"),
                nbformat.v4.new_code_cell("import os\nassert os.environ.get('XAIBIAS_FAST') == '1'\nprint(sum(range(10)))")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "00_quick_check.ipynb"
    nbformat.write(nb, path)
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = parser(__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "build" / "bench_notebooks")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per cell")
    args = ap.parse_args(argv)
    os.environ.update(XAIBIAS_FAST="1", XAIBIAS_HEADLESS="1", MPLBACKEND="Agg")  # inherited by the kernels
    info = machine("cpu")
    runner = load_runner()
    tmp = None
    if args.quick:
        tmp = tempfile.TemporaryDirectory()
        paths = [tiny_notebook(Path(tmp.name))]
        out = Path(tmp.name) / "out"
    else:
        paths = [p.resolve() for p in args.notebooks] or sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
        out = args.out
    rows = []
    for p in paths:
        print(f"running {p.name} ...", flush=True)
        r = runner.run(p, out, args.timeout)
        rows.append({"notebook": r["notebook"], "seconds": r["seconds"], "figures": r["figures"],
                     "status": "ok" if r["ok"] else "FAILED", "error": r["error"]})
        print(f"  {rows[-1]['status']} in {r['seconds']:.0f} s" + (f": {r['error']}" if r["error"] else ""), flush=True)
    total = sum(r["seconds"] for r in rows)
    rows.append({"notebook": "total", "seconds": total, "figures": sum(r["figures"] for r in rows), "status": ""})
    summary = {"notebooks": len(paths), "total_s": round(total, 1), "budget_s": BUDGET_S,
               "under 15 minutes": bool(total < BUDGET_S), "all ok": all(r["status"] == "ok" for r in rows[:-1])}
    notes = ["FAST mode (XAIBIAS_FAST=1), fresh kernel per notebook, one after another"]
    if args.quick:
        notes.append("quick run: one generated two-cell notebook, not the project's notebooks")
    present = {p.name[:2] for p in paths}
    missing = [f"{i:02d}" for i in range(7) if f"{i:02d}" not in present]
    if not args.quick and missing:
        notes.append(f"notebooks absent when this ran: {', '.join(missing)}")
    columns = [("notebook", "notebook"), ("seconds", "seconds"), ("figures", "figures"), ("status", "status")]
    payload = report("bench_notebooks", args, info, rows, columns, summary, notes)
    if tmp is not None:
        tmp.cleanup()
    return payload


if __name__ == "__main__":
    main()
