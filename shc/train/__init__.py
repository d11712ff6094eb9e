"""Stages 1 and 3 and the end-to-end pipeline (``run_pipeline(TrainConfig(...))``), single process or distributed
(torchrun / ``shc-train --nproc``); ``evaluate_sharded`` evaluates a database split across ranks."""
from shc.train.evaluation import evaluate_sharded
from shc.train.pipeline import PRESETS, TrainConfig, run_pipeline

__all__ = ["TrainConfig", "run_pipeline", "PRESETS", "evaluate_sharded"]
