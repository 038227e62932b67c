"""`ImagineConfig`: how many images to make from a prompt and how (the CLI's flags come from its fields)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

from captioner.errors import ConfigError

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
class ImagineConfig:
    n: int = field(default=1, metadata={"help": f"images to generate, 1 to {MAX_IMAGES}"})
    steps: int = field(default=0, metadata={"help": "denoising steps (0: the model's usual: 1 for a turbo/LCM/"
                                                    "lightning folder, else 25)"})
    guidance: float = field(default=-1.0, metadata={"help": "classifier-free guidance scale (-1: the model's usual: "
                                                           "0 for a turbo/LCM/lightning folder, else 7.5)"})
    size: int = field(default=0, metadata={"help": "image width and height in pixels, a multiple of 8 "
                                                   "(0: the model's own, e.g. 512)"})
    seed: int = field(default=0, metadata={"help": "random seed; image i uses seed + i"})

    def check(self) -> ImagineConfig:
        if not 1 <= self.n <= MAX_IMAGES:
            raise ConfigError(f"--n must be between 1 and {MAX_IMAGES}, not {self.n}")
        if not 0 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"--steps must be between 1 and {MAX_STEPS} (0 for the model's usual), not {self.steps}")
        if self.guidance != -1.0 and not 0.0 <= self.guidance <= 50.0:
            raise ConfigError(f"--guidance must be between 0 and 50 (-1 for the model's usual), not {self.guidance}")
        if self.size and (self.size % 8 or not 64 <= self.size <= 2048):
            raise ConfigError(f"--size must be a multiple of 8 between 64 and 2048 (0 for the model's own), "
                              f"not {self.size}")
        return self

    def for_model(self, folder: str | os.PathLike) -> ImagineConfig:
        """Steps and guidance filled in for this model folder where the config leaves them open."""
        name = os.path.basename(os.path.normpath(str(folder))).lower()
        steps, guidance = FEW_STEP_DEFAULTS if any(m in name for m in FEW_STEP_MARKERS) else MANY_STEP_DEFAULTS
        return replace(self, steps=self.steps or steps, guidance=guidance if self.guidance == -1.0 else self.guidance)
