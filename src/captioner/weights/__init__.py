"""The shipped default model folder."""
