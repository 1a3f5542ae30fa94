"""Shared test settings: FAST mode, a private cache folder, few threads, headless plotting."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("XAIBIAS_FAST", "1")
os.environ.setdefault("XAIBIAS_HEADLESS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

ISIC_SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "isic_sample"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # every test session gets its own cache folder, so cached models never leak between runs
    root = tmp_path_factory.getbasetemp() / "xaibias-cache"
    monkeypatch.setenv("XAIBIAS_CACHE", str(root))


@pytest.fixture
def isic_sample() -> Path:
    """The folder ../shared/isic_sample (real ISIC photos); the test is skipped when it is absent."""
    if not ISIC_SAMPLE.is_dir():
        pytest.skip(f"{ISIC_SAMPLE} is absent (it exists only in the project's own checkouts)")
    return ISIC_SAMPLE


# ../shared/isic_real: 2,114 real ISIC 2018 photos with the Bissoto et al. annotations and trap sets
# (see its README). XAIBIAS_ISIC_REAL points elsewhere; tests skip when the folder is absent.
ISIC_REAL = Path(os.environ.get("XAIBIAS_ISIC_REAL") or Path(__file__).resolve().parents[1].parent / "shared" / "isic_real")


@pytest.fixture
def isic_real() -> Path:
    """The folder ../shared/isic_real (or $XAIBIAS_ISIC_REAL); the test is skipped when it is absent."""
    if not (ISIC_REAL / "isic_bias.csv").is_file():
        pytest.skip(f"{ISIC_REAL} is absent (real ISIC photos with annotations exist only in the project's own "
                    f"checkouts; set XAIBIAS_ISIC_REAL to such a folder to run this test)")
    return ISIC_REAL
