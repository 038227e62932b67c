"""The studio: a local Gradio web app over the pipeline and the gallery (thin: logic lives in the library)."""
