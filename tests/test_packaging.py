"""The three package lists (pyproject.toml, environment.yml, binder/environment.yml) agree, the
notebooks are committed without outputs, and every badge link points at an existing file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
# conda-forge names that differ from the PyPI names
CONDA_TO_PYPI = {"pytorch-cpu": "torch", "pytorch": "torch"}
NOT_PACKAGES = {"python", "pip", "-e ."}


def _name(spec: str) -> str:
    return re.split(r"[<>=!~ \[;]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> tuple[set[str], set[str]]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    runtime = {_name(s) for s in data["dependencies"]}
    extras = {_name(s) for group in data["optional-dependencies"].values() for s in group}
    return runtime, extras


def _conda(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        m = re.match(r"^\s*-\s+(\S.*)$", line)
        if not m or m.group(1).endswith(":") or m.group(1).strip() in NOT_PACKAGES:
            continue
        spec = m.group(1).split("#")[0].strip()
        if spec.startswith("-e"):
            continue
        n = _name(spec)
        if n in NOT_PACKAGES or path.name == "environment.yml" and n in ("conda-forge",):
            continue
        names.add(CONDA_TO_PYPI.get(n, n))
    names.discard("conda-forge")
    return names


def test_environment_yml_lists_every_pyproject_package():
    runtime, extras = _pyproject()
    env = _conda(ROOT / "environment.yml")
    assert env == runtime | extras, f"only in environment.yml: {env - runtime - extras}; missing: {(runtime | extras) - env}"


def test_binder_lists_the_runtime_packages():
    runtime, extras = _pyproject()
    binder = _conda(ROOT / "binder" / "environment.yml")
    assert runtime <= binder, f"binder lacks {runtime - binder}"
    assert binder <= runtime | extras, f"binder has packages pyproject.toml does not know: {binder - runtime - extras}"
    assert "pytorch-cpu" in (ROOT / "binder" / "environment.yml").read_text()  # CPU-only torch on Binder
    assert (ROOT / "binder" / "postBuild").stat().st_mode & 0o111


NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))


def test_notebooks_exist_in_order():
    stems = [p.stem[:2] for p in NOTEBOOKS]
    assert stems and stems == sorted(stems) and stems[0] == "00"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    dirty = [i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and (c.get("outputs") or c.get("execution_count"))]
    assert not dirty, f"{path.name}: code cells {dirty} carry outputs; clear them before committing"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_starts_with_its_colab_badge_and_imports_no_local_files(path):
    nb = json.loads(path.read_text())
    first = "".join(nb["cells"][0]["source"])
    assert f"blob/main/notebooks/{path.name})" in first, f"{path.name}: first cell lacks its own Colab badge"
    local = {p.stem for p in path.parent.glob("*.py")}
    for c in nb["cells"]:
        src = "".join(c["source"])
        for mod in re.findall(r"^\s*(?:from|import)\s+([A-Za-z_]\w*)", src, flags=re.M):
            assert mod not in local, f"{path.name} imports the local file {mod}.py (Colab opens one file)"
    last = "".join(nb["cells"][-1]["source"])
    # closing checks: plain asserts, or xb.findings.check(...) calls inside xb.findings.all_hold()
    assert "assert" in last or "all_hold()" in last, f"{path.name}: the last cell should assert the notebook's finding"


def _links() -> list[tuple[str, str]]:
    found = []
    texts = [("README.md", (ROOT / "README.md").read_text())]
    texts += [(p.name, p.read_text()) for p in NOTEBOOKS]
    for where, text in texts:
        for url in re.findall(r"https://colab\.research\.google\.com/github/[^/]+/[^/]+/blob/main/([^)\s\"\\]+)", text):
            found.append((where, url))
        for url in re.findall(r"https://mybinder\.org/v2/gh/[^/]+/[^/]+/main\?urlpath=lab/tree/([^)\s\"\\]+)", text):
            found.append((where, url))
    return found


def test_every_badge_link_points_at_an_existing_path():
    links = _links()
    assert len(links) >= 2 * len(NOTEBOOKS)
    missing = [(w, p) for w, p in links if not (ROOT / p).exists()]
    assert not missing, f"badge links to missing files: {missing}"


def test_readme_table_is_current():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, str(ROOT / "tools" / "badges.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, f"README/notebook badges are stale; run `make badges`: {res.stdout}{res.stderr}"
