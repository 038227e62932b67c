"""Datasets: readers that yield a common `CaptionDataset`, and the encoder feature cache."""
from .dataset import CaptionDataset, load_dataset

__all__ = ["CaptionDataset", "load_dataset"]
