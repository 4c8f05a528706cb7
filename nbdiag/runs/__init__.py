"""Run directories (Parquet segments + a JSON manifest) and torch.distributed aggregation."""
