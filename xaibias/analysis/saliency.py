"""Global saliency (placeholder, notebook 03)."""

__all__: list[str] = []
