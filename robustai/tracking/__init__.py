"""Experiment tracking: TensorBoard event files under the run folder."""

from robustai.tracking.tensorboard import TensorBoardLogger

__all__ = ["TensorBoardLogger"]
