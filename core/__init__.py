"""Captioning engine: model, decoding, data, training, evaluation, CLI."""
