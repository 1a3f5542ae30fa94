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
