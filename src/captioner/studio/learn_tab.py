"""The studio's Models tab: "Learn from my edits" and the model picker.

- **Learn from my edits**: how many captions of the gallery the user edited, a button that learns from
  them in the background (`captioner.learning.background.LearnJob`: the same `learn` as `captioner learn
  --gallery`), its progress (polled by a timer while it runs), then the held-out check (CIDEr-D against the
  user's own captions before and after, the share of captions changed) or why no model was written. The
  new model goes into a new folder of the gallery's ``models/``; the studio keeps its model until the user
  switches.
- **The model picker**: the model the studio started with and the gallery's learned models, by the names
  the server lists (`captioner.learning.picker.ModelPicker`); the browser sends a name back, which the
  server maps to a folder it listed itself (anything else is refused). Switching changes the captioner of
  every tab; the started model is always there to go back to.
"""
from __future__ import annotations

import html
from types import SimpleNamespace

import gradio as gr

from captioner.learning.background import LearnJob, count_edits
from captioner.learning.picker import STARTED, ModelPicker
from captioner.studio.values import user_errors

#: seconds between two looks at a running learn
POLL_S = 1.0


class LearnTab:
    """The Models tab's events (the `Studio` gives the gallery and the captioner it switches)."""

    def __init__(self, studio, model_dir=None):
        self.studio = studio
        self.job = LearnJob(studio.gallery, model_dir)
        # a learned model loads on the studio's runtime (torch-free where its folder carries its ONNX runtime)
        self.picker = ModelPicker(studio.gallery.folder, studio.captioner, load=studio.engines.load)

    # ------------------------------------------------------------------ handlers
    def edits_line(self) -> str:
        n = count_edits(self.studio.gallery)
        if self.studio.read_only:
            return f"Your gallery holds **{n}** edited caption{'s' if n != 1 else ''}; it is read-only, so no " \
                   "model can be learned into it."
        return (f"Your gallery holds **{n}** edited caption{'s' if n != 1 else ''} (edit captions in the Gallery "
                "tab; with 20 or more, some are held out to check the new model).")

    def status_text(self) -> str:
        s = self.job.status()
        current = html.escape(self.studio.model_name)
        if s.state == "idle":
            return ""
        if s.state == "running":
            where = f": {s.done} of {s.total} ({100 * s.fraction:.0f}%)" if s.total else ""
            return f"⏳ {html.escape(s.message)}{where}"
        if s.state in ("refused", "failed"):
            lead = "The new model was not kept" if s.state == "refused" else "Nothing was learned"
            return f"⚠️ {lead}: {html.escape(s.message)}. The studio keeps using **{current}**."
        r = s.report or {}
        lines = [f"✅ Learned from {r.get('trained_on')} of {r.get('edits')} edits in {r.get('seconds', 0):.0f} s; "
                 f"new words: {html.escape(', '.join(r.get('new_words') or []) or 'none')}."]
        held = r.get("held_out")
        if held:
            again = (" Since it passed, the new model then learned again from all your edits."
                     if r.get("trained_on") == r.get("edits") else "")
            lines.append(f"Held-out check on {held['held_out_edits']} of your edits: CIDEr-D against your captions "
                         f"**{held['cider_before']:.1f} → {held['cider_after']:.1f}**; captions changed on "
                         f"{100 * held['changed_share']:.0f}% of those photos.{again}")
        else:
            lines.append("Not checked: too few edits to hold some out. Try it, and switch back if it is worse.")
        lines.append(f"It is **{html.escape(s.model_id or '')}** in the model list below; the studio keeps using "
                     f"**{current}** until you switch.")
        return "\n\n".join(lines)

    def picker_update(self):
        return gr.Dropdown(choices=self.picker.choices(), value=self.picker.current)

    def refresh(self):
        """Opening the tab: the edit count, the last run's outcome, the model list (and the timer on while a
        run goes on, e.g. after a reload)."""
        return (self.edits_line(), self.status_text(), self.picker_update(),
                gr.Timer(active=self.job.status().running))

    def start_learning(self):
        if self.studio.read_only:
            return f"⚠️ {html.escape(self.studio.read_only_message())}", gr.Timer(active=False)
        self.job.start()
        return self.status_text(), gr.Timer(active=True)

    def poll(self):
        """The timer's tick: the progress; once the run ended, the outcome, the new list, the timer off."""
        running = self.job.status().running
        return (self.status_text(), gr.Timer(active=running),
                gr.skip() if running else self.picker_update(), gr.skip() if running else self.edits_line())

    def use_model(self, name):
        """Switch every tab's captioner to the listed model `name` (or back to the started one): the message,
        the picker, and the page's header naming the model now in use."""
        captioner = self.picker.use(name)
        self.studio.captioner = captioner
        self.studio.model_name = captioner.name
        back = "" if self.picker.current == STARTED else " (choose the first entry to go back)"
        return (f"The studio now captions with **{html.escape(captioner.name)}**{back}.", self.picker_update(),
                self.studio.header_html())

    # ------------------------------------------------------------------ layout
    def build(self) -> list:
        """The tab's widgets and events (inside ``gr.Tabs``); no component with heavy values."""
        w = SimpleNamespace()
        with gr.Tab("Models", id="models", elem_id="tab-models") as w.tab:
            gr.Markdown("### Learn from my edits\nThe captioner learns from the captions you corrected in the "
                        "gallery. The new model is stored in the gallery's `models/` folder, beside the one you "
                        "use now, which is never changed; you choose when to switch.")
            w.edits = gr.Markdown("", elem_id="learn-edits")
            w.learn_btn = gr.Button("Learn from my edits", variant="primary", elem_id="learn-button",
                                    interactive=not self.studio.read_only)
            w.status = gr.Markdown("", elem_id="learn-status")
            w.timer = gr.Timer(POLL_S, active=False)
            gr.Markdown("### Captioning model")
            with gr.Row(equal_height=True):
                w.model = gr.Dropdown(choices=self.picker.choices(), value=self.picker.current, label="Model",
                                      elem_id="model-picker", scale=4)
                w.use_btn = gr.Button("Use this model", elem_id="use-model", scale=0, min_width=160)
            w.model_msg = gr.Markdown("", elem_id="model-message")
        w.tab.select(user_errors(self.refresh), None, [w.edits, w.status, w.model, w.timer],
                     api_visibility="private", show_progress="hidden")
        w.learn_btn.click(user_errors(self.start_learning), None, [w.status, w.timer], api_visibility="private",
                          show_progress="hidden")
        w.timer.tick(user_errors(self.poll), None, [w.status, w.timer, w.model, w.edits], api_visibility="private",
                     show_progress="hidden")
        # the header (`Studio.header`, built before the tabs) names the model in use: redrawn on a switch
        w.use_btn.click(user_errors(self.use_model), [w.model], [w.model_msg, w.model, self.studio.header],
                        api_visibility="private",
                        show_progress_on=[w.model_msg], concurrency_id="engine", concurrency_limit=1)
        return []
