"""faiss-cpu is the optional extra ``xaibias[scale]`` (issue 26, item 6): the core install does without
it, a fit that needs it says which extra to install, and the test extra keeps its code paths tested."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tomllib
import torch

import xaibias as xb
from xaibias.analysis._neighbors import MissingExtraError
from xaibias.analysis.spray import SpectralBase

ROOT = Path(__file__).resolve().parents[1]
INSTALL = 'pip install "xaibias[scale]"'


def _names(specs: list[str]) -> set[str]:
    return {s.split(">")[0].split("=")[0].split("<")[0].strip() for s in specs}


@pytest.fixture
def no_faiss(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import faiss`` fail, as it does in a core install (a None entry blocks the import)."""
    monkeypatch.setitem(sys.modules, "faiss", None)


def _maps(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    R = torch.rand(n, 16, 16, generator=g)
    R[: n // 2, :8] += 2.0  # two strategies: top half and everywhere
    return R, torch.rand(n, 3, 32, 32, generator=g)


def test_faiss_is_an_extra_not_a_core_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    assert "faiss-cpu" not in _names(project["dependencies"])
    assert "faiss-cpu" in _names(extras["scale"])
    assert "faiss-cpu" in _names(extras["test"])  # so that `make test` (.[test,lab]) runs the faiss paths
    binder = (ROOT / "binder" / "environment.yml").read_text()
    assert not re.search(r"^\s*-\s*faiss", binder, flags=re.M)  # no notebook needs it


def test_importing_the_package_does_not_import_faiss():
    code = "import sys; sys.modules['faiss'] = None; import xaibias; print('faiss ok')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert res.returncode == 0 and "faiss ok" in res.stdout, res.stderr


@pytest.mark.parametrize("neighbors, large_n", [("approx", 50_000), ("auto", 30)])
def test_a_fit_that_needs_faiss_names_the_extra(no_faiss, neighbors, large_n):
    R, _ = _maps(40)
    with pytest.raises(ImportError) as err:
        xb.analysis.SpRAy(n_clusters=2, n_neighbors=5, neighbors=neighbors, large_n=large_n).fit(R)
    assert isinstance(err.value, MissingExtraError)
    msg = str(err.value)
    assert INSTALL in msg and "neighbors='exact'" in msg
    assert f"SpRAy.fit on 40 maps (neighbors={neighbors!r}, large_n={large_n:,})" in msg


def test_the_error_comes_before_the_features_are_computed(no_faiss, monkeypatch):
    def no_features(*args, **kwargs):
        raise AssertionError("the maps were reduced although the neighbour search cannot run")

    monkeypatch.setattr(SpectralBase, "_features", no_features)
    R, X = _maps(40)
    with pytest.raises(MissingExtraError, match=r"GEBI\.fit on 40 maps .* needs faiss"):
        xb.analysis.GEBI(n_clusters=2, n_neighbors=5, large_n=30).fit(R, X)


def test_without_faiss_exact_search_still_clusters(no_faiss):
    R, X = _maps(40)
    below = xb.analysis.SpRAy(n_clusters=2, n_neighbors=5, random_state=0).fit(R)  # 40 < large_n: exact
    forced = xb.analysis.GEBI(n_clusters=2, n_neighbors=5, neighbors="exact", large_n=30, random_state=0).fit(R, X)
    assert below.knn_method_ == forced.knn_method_ == "exact"
    assert set(np.unique(below.labels_)) == {0, 1} and len(forced.labels_) == 40
