"""The captioning model: backbones, encoder, attention decoder, vocabulary, config, and the model folder (load/save)."""
