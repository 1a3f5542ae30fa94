"""Real-data loaders (placeholder)."""

__all__: list[str] = []
