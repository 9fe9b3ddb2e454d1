"""Datasets: token batches with per-position annotations; kinds registered in ``registry.py``."""
