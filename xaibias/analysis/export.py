"""HDF5 export (placeholder, notebook 02)."""

__all__: list[str] = []
