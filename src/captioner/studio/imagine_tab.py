"""The studio's Imagine tab: images from a caption with the user's own text-to-image model, each
captioned back, with how likely the captioner finds the prompt for it.

Wiring (inside ``gr.Tabs`` in `Studio.build`)::

    heavy += build_imagine_tab(self)          # the model folder: studio.t2i_model, else $CAPTIONER_T2I_MODEL

Without a diffusers model folder, or without the optional extra, the tab only explains how to enable
it; nothing is ever downloaded (the folder loads with ``local_files_only=True``). The model loads on
the first Generate and stays loaded. The browser sends only the prompt and three numbers, clamped here.

API (gradio_client)::

    client.predict("a dog running on the beach", 1, 0, 0, api_name="/imagine")
    # -> (gallery, table html, {"prompt": ..., "images": [{"seed", "width", "height", "caption",
    #     "prompt_log_likelihood", "caption_log_likelihood", "word_probability", "relative_to_caption",
    #     "unknown_words"}], "message": ...})
"""
from __future__ import annotations

import html
import os
import threading
from typing import Any

import gradio as gr

from captioner.imagine.config import T2I_MODEL_ENV, ImagineConfig
from captioner.studio.values import int_value, user_errors

#: The studio makes at most this many images per click (each takes seconds to minutes on a CPU).
MAX_STUDIO_IMAGES = 4
MAX_STUDIO_STEPS = 50
MAX_PROMPT_CHARS = 300
API_VISIBILITY = "undocumented"


class ImagineTab:
    """The Imagine tab's events: one text-to-image model per studio, loaded on first use."""

    def __init__(self, studio, t2i_model: str | os.PathLike | None = None):
        self.studio = studio
        self.folder = t2i_model or getattr(studio, "t2i_model", None) or os.environ.get(T2I_MODEL_ENV)
        self._t2i = None
        self._lock = threading.Lock()

    def unavailable(self) -> str | None:
        """Why images cannot be generated, as Markdown telling how to enable it (None: they can)."""
        from captioner.imagine.t2i import INSTALL_HINT, ImagineError, missing_packages, model_folder

        missing = missing_packages()
        if missing:
            return ("**Images from captions** is an optional extra. Install it with "
                    f"`{INSTALL_HINT}` ({', '.join(missing)}), then restart the studio with "
                    "`--t2i-model DIR`.")
        if not self.folder:
            return ("**Images from captions** needs a text-to-image model you already have, in diffusers format "
                    "(a folder with `model_index.json`, e.g. a Stable Diffusion or SD-Turbo download). Start the "
                    f"studio with `--t2i-model DIR` (or set `${T2I_MODEL_ENV}`). Nothing is downloaded.")
        try:
            model_folder(self.folder)
        except ImagineError as exc:
            return f"**Images from captions** is off: {html.escape(str(exc))}"
        return None

    def t2i(self):
        from captioner.imagine.t2i import TextToImage

        with self._lock:
            if self._t2i is None:
                self._t2i = TextToImage(self.folder)
            return self._t2i

    # ------------------------------------------------------------------ events
    def generate(self, prompt: Any, n: Any, steps: Any, seed: Any, progress=gr.Progress()):
        """Generate, caption back, score; returns (gallery items, results table HTML, result dict)."""
        from captioner.imagine import imagine
        from captioner.studio.engines import torch_twin

        reason = self.unavailable()
        if reason:
            raise gr.Error(reason.replace("**", "").replace("`", ""), print_exception=False)
        prompt = " ".join(str(prompt or "").split())
        if not prompt:
            raise gr.Error("Describe the image to generate first.", print_exception=False)
        if len(prompt) > MAX_PROMPT_CHARS:
            raise gr.Error(f"The description is longer than {MAX_PROMPT_CHARS} characters; shorten it.",
                           print_exception=False)
        config = ImagineConfig(n=int_value(n, 1, MAX_STUDIO_IMAGES, 1), steps=int_value(steps, 0, MAX_STUDIO_STEPS, 0),
                               seed=int_value(seed, 0, 2**31 - 1, 0))
        progress(0.0, desc="loading the text-to-image model")
        t2i = self.t2i()

        def report(done: int, total: int) -> None:
            progress(done / (total + 1), desc=f"generated {done} of {total}")

        # the prompt's likelihood is PyTorch's (diffusers loads torch anyway): the captioner's PyTorch twin
        items = imagine(prompt, t2i, torch_twin(self.studio.captioner), config, progress=report)
        progress(1.0, desc="captioned")
        gallery = [(item.image, item.match.caption or "") for item in items]
        result = {"prompt": prompt, "images": [{k: v for k, v in item.to_dict().items() if k not in ("file", "prompt")}
                                               for item in items],
                  "message": f"{len(items)} image(s) for “{prompt}”, each captioned back."}
        return gallery, results_table(prompt, items), result

    # ------------------------------------------------------------------ layout
    def build(self) -> list:
        """The tab (inside ``gr.Tabs``); returns the components with heavy values."""
        reason = self.unavailable()
        with gr.Tab("Imagine", id="imagine", elem_id="tab-imagine"):
            gr.Markdown("Generate pictures from a description with your own text-to-image model, then let the "
                        "captioner describe each one and say how likely it finds your description for it.",
                        elem_id="imagine-intro")
            if reason:
                gr.Markdown(reason, elem_id="imagine-disabled")
                return []
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):
                    prompt = gr.Textbox(label="Description", placeholder="a dog running on the beach",
                                        max_length=MAX_PROMPT_CHARS, elem_id="imagine-prompt")
                    n = gr.Slider(1, MAX_STUDIO_IMAGES, value=1, step=1, label="Images", elem_id="imagine-n")
                    steps = gr.Slider(0, MAX_STUDIO_STEPS, value=0, step=1, label="Steps (0: the model's usual)",
                                      elem_id="imagine-steps")
                    seed = gr.Number(value=0, precision=0, label="Seed", elem_id="imagine-seed")
                    go = gr.Button("Generate", variant="primary", elem_id="imagine-button")
                with gr.Column(scale=3, min_width=480):
                    images = gr.Gallery(label="Generated (captioned back)", columns=4, height="auto",
                                        interactive=False, elem_id="imagine-gallery")
                    table = gr.HTML("", elem_id="imagine-table")
                    with gr.Accordion("Result as JSON", open=False):
                        result = gr.JSON(label="Result", elem_id="imagine-json")
        go.click(user_errors(self.generate), [prompt, n, steps, seed], [images, table, result], api_name="imagine",
                 api_visibility=API_VISIBILITY, concurrency_id="engine", concurrency_limit=1)
        prompt.submit(user_errors(self.generate), [prompt, n, steps, seed], [images, table, result],
                      api_visibility="private", concurrency_id="engine", concurrency_limit=1)
        return [images]


def results_table(prompt: str, items) -> str:
    """One row per image: its seed, the caption it got back, the prompt's likelihood per word."""
    rows = []
    for item in items:
        m = item.match
        if m.prompt_score is None:
            score = "the captioner knows none of these words"
        else:
            score = (f"{m.prompt_score:.2f} per word (p ≈ {m.word_probability:.3f}); "
                     f"{m.relative:.2f}× as likely as its own caption")
        unknown = f"<br><small>not known to the captioner: {html.escape(', '.join(m.unknown_words))}</small>" \
            if m.unknown_words else ""
        rows.append(f"<tr><td>{item.seed}</td><td>{html.escape(m.caption or '(no caption)')}</td>"
                    f"<td>{html.escape(score)}{unknown}</td></tr>")
    return (f"<table class='imagine-table'><caption>How likely the captioner finds “{html.escape(prompt)}”"
            "</caption><thead><tr><th>seed</th><th>caption it gives</th><th>prompt log-likelihood</th></tr>"
            f"</thead><tbody>{''.join(rows)}</tbody></table>")


def build_imagine_tab(studio, t2i_model: str | os.PathLike | None = None) -> list:
    """Build the Imagine tab inside the open ``gr.Tabs`` of `studio`'s Blocks; keeps the tab's object as
    ``studio.imagine``; returns the heavy components (for `Studio.forget_rendered`)."""
    studio.imagine = ImagineTab(studio, t2i_model)
    return studio.imagine.build()
