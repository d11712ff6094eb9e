"""Stages 1 and 3 and the end-to-end pipeline (``run_pipeline(TrainConfig(...))``)."""
from shc.train.pipeline import PRESETS, TrainConfig, run_pipeline

__all__ = ["TrainConfig", "run_pipeline", "PRESETS"]
