"""Artifact painters (placeholder, filled by the foundation issue)."""

__all__: list[str] = []
