"""Datasets: metadata tables (csv/json/jsonl), image loading and sizing, the repeated dataset and
its shuffling sampler."""
