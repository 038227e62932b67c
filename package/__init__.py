"""captioner: an offline image-captioning studio (Show, Attend and Tell)."""
__version__ = "0.1.0"
