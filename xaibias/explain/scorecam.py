"""Score-CAM (placeholder, notebook 05)."""

__all__: list[str] = []
