"""RMA, RRA, AOPC (placeholder, notebook 05)."""

__all__: list[str] = []
