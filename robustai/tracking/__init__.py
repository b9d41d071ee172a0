"""Experiment tracking: TensorBoard event files under the run folder."""

from robustai.tracking.tensorboard import TensorBoardLogger, quiet_writer_thread_errors

__all__ = ["TensorBoardLogger", "quiet_writer_thread_errors"]
