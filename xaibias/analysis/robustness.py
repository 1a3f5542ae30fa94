"""LRP robustness under image transforms (placeholder, notebook 04)."""

__all__: list[str] = []
