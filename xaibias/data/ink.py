"""Rule-based ink segmentation (placeholder, notebook 03)."""

__all__: list[str] = []
