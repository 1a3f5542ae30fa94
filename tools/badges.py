"""Write the notebook table of README.md (goal, Colab and Binder badges, FAST minutes on CPU) and
make sure every notebook's first cell carries its own Colab badge.

Usage: python tools/badges.py [--check]   (--check only reports what would change; exit 1 if any)

Minutes come from tools/notebook_minutes.json (committed); without --check it is first refreshed
from build/notebook_times.json, which `make notebooks` writes (run it in FAST mode for the table),
or with --junit FILE from the per-cell times of a pytest/nbval run (`make test` with
PYTEST_ADDOPTS=--junitxml=FILE: the notebook test run writes FILE last).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
REPO = "xaibias/xaibias"
BRANCH = "main"
START, END = "<!-- notebooks:start -->", "<!-- notebooks:end -->"

GOALS = {
    "00_data_and_bias": "Synthetic lesions and their artifacts; how co-occurrence creates bias; a model that learns it",
    "01_lrp_rules": "LRP rules by hand and in zennit; canonizers (incl. DenseNet); LRP vs gradient, IG, Grad-CAM",
    "02_spray_vs_gebi": "SpRAy vs GEBI clustering scored against known artifacts; counterfactual bias insertion",
    "03_global_saliency_ink": "Global saliency on ink masks across four training sets; does it predict failure?",
    "04_crp_and_robustness": "Concept relevance (CRP) on lesions and chest X-rays; LRP robustness; a border-bias fix",
    "05_measuring_bias": "Known-bias synthetic sets: RMA, RRA, AOPC, Welch tests, biased vs unbiased models",
    "06_reducing_bias": "Resampling, artifact augmentation, relevance penalties (gradient and LRP) and a trainable attention gate, each re-measured",
    "07a_reveal_and_localise": "Concept vectors (CAVs) find and localise three artifacts, each gated; TCAV against random concepts",
    "07b_revise_and_reevaluate": "P-ClArC by hand, A-/RR-ClArC, DFR beside 06's corrections on three artifacts; worst-group and poisoned accuracy",
    "08_real_isic": "Capstone on real ISIC photos: a pretrained model fine-tuned offline, insertion, SpRAy vs GEBI, a trap set, CAVs and corrections",
}


def colab_url(path: str) -> str:
    return f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{path}"


def binder_url(path: str) -> str:
    return f"https://mybinder.org/v2/gh/{REPO}/{BRANCH}?urlpath=lab/tree/{path}"


def colab_badge(path: str) -> str:
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({colab_url(path)})"


def binder_badge(path: str) -> str:
    return f"[![Binder](https://mybinder.org/badge_logo.svg)]({binder_url(path)})"


SAVED = ROOT / "tools" / "notebook_minutes.json"
NOTEBOOK_GLOB = "[0-9][0-9]*_*.ipynb"   # 00_x ... 07a_x, 07b_x


def junit_minutes(path: Path) -> dict[str, float]:
    """Minutes per notebook from a JUnit XML file of an nbval run (the sum of its cells' times)."""
    import xml.etree.ElementTree as ET

    seconds: dict[str, float] = {}
    failed: set[str] = set()
    for case in ET.parse(path).getroot().iter("testcase"):
        where = f"{case.get('file', '')} {case.get('classname', '')}"
        m = re.search(r"(\d\d[a-z]?_[A-Za-z0-9_]+)\.ipynb", where)
        if not m:
            continue
        seconds[m.group(1)] = seconds.get(m.group(1), 0.0) + float(case.get("time", 0))
        if case.find("failure") is not None or case.find("error") is not None:
            failed.add(m.group(1))
    return {nb: round(s / 60, 1) for nb, s in seconds.items() if nb not in failed}


def minutes(update: bool, junit: Path | None = None) -> dict[str, float]:
    """Minutes per notebook: the committed record, refreshed from build/ (or ``junit``) when ``update``."""
    saved = json.loads(SAVED.read_text()) if SAVED.is_file() else {}
    built = ROOT / "build" / "notebook_times.json"
    fresh: dict[str, float] = {}
    if update and junit is not None:
        fresh = junit_minutes(junit)
    elif update and built.is_file():
        rows = json.loads(built.read_text())
        fresh = {Path(r["notebook"]).stem: round(r["seconds"] / 60, 1) for r in rows if r.get("ok")}
    if fresh:
        saved.update(fresh)
        SAVED.write_text(json.dumps(dict(sorted(saved.items())), indent=2) + "\n")
    return saved


def table(update: bool = False, junit: Path | None = None) -> str:
    mins = minutes(update, junit)
    lines = ["| notebook | goal | Colab | Binder | FAST on 2 CPU cores |", "| --- | --- | --- | --- | --- |"]
    for nb in sorted((ROOT / "notebooks").glob(NOTEBOOK_GLOB)):
        rel = f"notebooks/{nb.name}"
        m = mins.get(nb.stem)
        lines.append(f"| [{nb.stem}]({rel}) | {GOALS.get(nb.stem, '')} | {colab_badge(rel)} | {binder_badge(rel)} | "
                     f"{f'{m:.1f} min' if m is not None else 'not measured'} |")
    return "\n".join(lines)


def fix_notebook(nb_path: Path, check: bool) -> bool:
    nb = nbformat.read(nb_path, as_version=4)
    badge = colab_badge(f"notebooks/{nb_path.name}")
    first = nb.cells[0] if nb.cells else None
    if first is not None and first.cell_type == "markdown" and badge in first.source:
        return False
    if check:
        return True
    if first is not None and first.cell_type == "markdown":
        src = re.sub(r"\[!\[Open In Colab\]\([^)]*\)\]\([^)]*\)\n?", "", first.source)
        first.source = badge + "\n\n" + src.lstrip()
    else:
        nb.cells.insert(0, nbformat.v4.new_markdown_cell(badge))
    nbformat.write(nb, nb_path)
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--junit", type=Path, help="take the minutes from this JUnit XML file of an nbval run")
    args = ap.parse_args(argv)
    changed = [p.name for p in sorted((ROOT / "notebooks").glob(NOTEBOOK_GLOB)) if fix_notebook(p, args.check)]
    readme = ROOT / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"README.md lacks the markers {START} / {END}", file=sys.stderr)
        return 1
    new = text[: text.index(START) + len(START)] + "\n" + table(update=not args.check, junit=args.junit) + "\n" + text[text.index(END):]
    if new != text:
        changed.append("README.md")
        if not args.check:
            readme.write_text(new)
    print(("would change: " if args.check else "changed: ") + (", ".join(changed) or "nothing"))
    return 1 if (args.check and changed) else 0


if __name__ == "__main__":
    sys.exit(main())
