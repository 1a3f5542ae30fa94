"""Synthetic chest X-rays (placeholder, notebook 04)."""

__all__: list[str] = []
