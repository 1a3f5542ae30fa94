"""bias_report (placeholder, notebook 06)."""

__all__: list[str] = []
