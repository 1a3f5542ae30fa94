"""Execute every notebook headlessly into build/: executed copies, their figures and a timing table.

Usage: python tools/run_notebooks.py [--out build] [--timeout 600] [notebooks/01_x.ipynb ...]

FAST mode follows the environment (CI or XAIBIAS_FAST=1). Each notebook runs in a fresh kernel from
the notebooks/ folder, as a reader would run it. Exits non-zero when a notebook fails, after
running the others.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[1]


def extract_figures(nb: nbformat.NotebookNode, folder: Path) -> int:
    """Write every PNG output of ``nb`` to ``folder`` as cell<k>_<j>.png; return how many."""
    folder.mkdir(parents=True, exist_ok=True)
    count = 0
    for k, cell in enumerate(nb.cells):
        for j, out in enumerate(cell.get("outputs", [])):
            data = out.get("data", {})
            if "image/png" in data:
                (folder / f"cell{k:03d}_{j}.png").write_bytes(base64.b64decode(data["image/png"]))
                count += 1
    return count


def run(path: Path, out: Path, timeout: int) -> dict:
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = str(exc).strip().splitlines()[-1] if str(exc).strip() else repr(exc)
    except Exception as exc:  # noqa: BLE001 - a timeout or a dead kernel is a failed notebook, not a crash
        error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    seconds = time.perf_counter() - start
    out.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out / path.name)
    figures = extract_figures(nb, out / "figures" / path.stem)
    return {"notebook": path.name, "seconds": round(seconds, 1), "figures": figures, "ok": error is None,
            "error": error}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("notebooks", nargs="*", type=Path)
    ap.add_argument("--out", type=Path, default=ROOT / "build")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = ap.parse_args(argv)
    paths = args.notebooks or sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))
    fast = os.environ.get("XAIBIAS_FAST") or ("CI" if os.environ.get("CI") else "off")
    print(f"executing {len(paths)} notebook(s) into {args.out} (FAST: {fast})", flush=True)
    rows = []
    for p in paths:
        print(f"  {p.name} ...", end="", flush=True)
        row = run(p.resolve(), args.out, args.timeout)
        rows.append(row)
        print(f" {'ok' if row['ok'] else 'FAILED'} in {row['seconds']:.0f} s, {row['figures']} figures", flush=True)
        if row["error"]:
            print(f"    {row['error']}", flush=True)
    print(f"\n{'notebook':<36} {'seconds':>8} {'figures':>8}  status")
    for r in rows:
        print(f"{r['notebook']:<36} {r['seconds']:>8.1f} {r['figures']:>8}  {'ok' if r['ok'] else 'FAILED'}")
    print(f"{'total':<36} {sum(r['seconds'] for r in rows):>8.1f}")
    (args.out / "notebook_times.json").write_text(json.dumps(rows, indent=2))
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
