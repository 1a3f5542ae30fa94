"""attribute_dataset (placeholder, benchmarks issue)."""

__all__: list[str] = []
