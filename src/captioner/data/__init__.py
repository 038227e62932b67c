"""Datasets: readers that yield a common `CaptionDataset`, and the encoder feature cache."""
from captioner.data.dataset import CaptionDataset
from captioner.data.loading import load_dataset

__all__ = ["CaptionDataset", "load_dataset"]
