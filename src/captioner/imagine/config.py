"""`ImagineConfig`: how many images to make from a prompt and how (the CLI's flags come from its fields)."""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

from captioner.settings import Settings, setting

#: The environment variable naming the user's text-to-image model folder (instead of --t2i-model).
T2I_MODEL_ENV = "CAPTIONER_T2I_MODEL"
MAX_IMAGES = 8
MAX_STEPS = 200
#: Steps and guidance when the config leaves them to the model: few-step distilled models (SD-Turbo,
#: SDXL-Turbo, LCM, Lightning: named so in their folder name) want 1 step and no guidance.
FEW_STEP_MARKERS = ("turbo", "lcm", "lightning", "hyper")
FEW_STEP_DEFAULTS = (1, 0.0)
MANY_STEP_DEFAULTS = (25, 7.5)


@dataclass(frozen=True)
class ImagineConfig(Settings):
    n: int = setting(1, "images to generate", lo=1, hi=MAX_IMAGES)
    steps: int = setting(0, "denoising steps (0: the model's usual: 1 for a turbo/LCM/lightning folder, else 25)",
                         lo=1, hi=MAX_STEPS, special={0: "the model's usual"})
    guidance: float = setting(-1.0, "classifier-free guidance scale (-1: the model's usual: 0 for a turbo/LCM/"
                              "lightning folder, else 7.5)", lo=0.0, hi=50.0, special={-1: "the model's usual"})
    size: int = setting(0, "image width and height in pixels (0: the model's own, e.g. 512)", lo=64, hi=2048,
                        step=8, special={0: "the model's own"})
    seed: int = setting(0, "random seed; image i uses seed + i")

    def for_model(self, folder: str | os.PathLike) -> ImagineConfig:
        """Steps and guidance filled in for this model folder where the config leaves them open."""
        name = os.path.basename(os.path.normpath(str(folder))).lower()
        steps, guidance = FEW_STEP_DEFAULTS if any(m in name for m in FEW_STEP_MARKERS) else MANY_STEP_DEFAULTS
        return replace(self, steps=self.steps or steps, guidance=guidance if self.guidance == -1.0 else self.guidance)
