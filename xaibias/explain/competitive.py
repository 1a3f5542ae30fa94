"""Competitive gradient x input (placeholder, notebook 03)."""

__all__: list[str] = []
