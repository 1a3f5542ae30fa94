"""Synthetic object/background bias sets (placeholder, notebook 05)."""

__all__: list[str] = []
