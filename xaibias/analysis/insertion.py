"""bias_insertion (placeholder, notebook 02)."""

__all__: list[str] = []
