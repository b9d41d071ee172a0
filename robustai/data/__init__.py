"""Data sets as in-memory tensors in [0, 1], batched by indexing."""

from robustai.data.loader import DataBundle, TensorLoader
from robustai.data.registry import DATASETS, SPLIT_SETTINGS, build_data, data_names

__all__ = [
    "DATASETS",
    "SPLIT_SETTINGS",
    "DataBundle",
    "TensorLoader",
    "build_data",
    "data_names",
]
