"""Sampling helpers (placeholder)."""

__all__: list[str] = []
