"""The user's own text-to-image model: a diffusers folder on disk, loaded without any network access.

Nothing is downloaded: the folder must already hold the model (``model_index.json`` and its parts),
e.g. a Stable Diffusion or SD-Turbo download the user made themselves. diffusers and transformers are
an optional extra (``pip install -e ".[imagine]"``) and are imported only here, only when used.
"""
from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path

from captioner.errors import CaptionerError
from captioner.imagine.config import T2I_MODEL_ENV, ImagineConfig

INSTALL_HINT = 'pip install -e ".[imagine]"'


class ImagineError(CaptionerError):
    """Images cannot be generated (the extra is not installed, the model folder is missing or wrong)."""


def missing_packages() -> list[str]:
    """The optional packages image generation needs that are not installed."""
    return [name for name in ("diffusers", "transformers") if importlib.util.find_spec(name) is None]


def require_packages() -> None:
    missing = missing_packages()
    if missing:
        raise ImagineError(f"images from captions need the optional extra ({', '.join(missing)} not installed): "
                           f"{INSTALL_HINT}")


def model_folder(folder: str | os.PathLike | None) -> Path:
    """The text-to-image model folder (`folder`, else $CAPTIONER_T2I_MODEL), checked to be a diffusers folder."""
    folder = folder or os.environ.get(T2I_MODEL_ENV)
    if not folder:
        raise ImagineError(f"no text-to-image model: pass --t2i-model DIR (or set ${T2I_MODEL_ENV}), a folder in "
                           "diffusers format you already have, e.g. a Stable Diffusion or SD-Turbo download; "
                           "nothing is downloaded")
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise ImagineError(f"{path}: the text-to-image model folder does not exist")
    if not (path / "model_index.json").is_file():
        raise ImagineError(f"{path}: not a diffusers model folder (it has no model_index.json); give the folder "
                           "that holds model_index.json, unet/, vae/, text_encoder/ ...")
    return path


class TextToImage:
    """A loaded diffusers text-to-image pipeline and the folder it came from."""

    def __init__(self, folder: str | os.PathLike | None, device: str = "cpu"):
        self.folder = model_folder(folder)
        require_packages()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: local_files_only below already
        os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
        os.environ.setdefault("DISABLE_TELEMETRY", "1")
        import diffusers
        import transformers

        diffusers.utils.logging.set_verbosity_error()
        transformers.utils.logging.set_verbosity_error()
        import torch

        # half precision on a GPU; on a CPU float32 (half is slow there, and some kernels lack it)
        # safetensors only: a folder's pickled .bin weights are never unpickled (diffusers refuses them)
        kwargs = {"local_files_only": True, "use_safetensors": True,
                  "torch_dtype": torch.float16 if str(device).startswith("cuda") else torch.float32}
        weights = [p.name for p in self.folder.glob("*/*") if p.suffix == ".safetensors"]
        if weights and all(".fp16." in name for name in weights):
            kwargs["variant"] = "fp16"  # a download holding only the fp16 files (e.g. sd-turbo's fp16 variant)
        try:
            self.pipe = diffusers.AutoPipelineForText2Image.from_pretrained(self.folder, **kwargs)
        except Exception as exc:  # diffusers raises many kinds (OSError, ValueError, EnvironmentError...)
            raise ImagineError(f"{self.folder}: the text-to-image model could not be loaded "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        self.pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.device = device

    @property
    def native_size(self) -> int:
        """The image size the model was trained for (pixels)."""
        unet = getattr(self.pipe, "unet", None)
        vae_scale = getattr(self.pipe, "vae_scale_factor", 8)
        sample = getattr(getattr(unet, "config", None), "sample_size", 64)
        return int(sample * vae_scale)

    def generate(self, prompt: str, config: ImagineConfig,
                 progress: Callable[[int, int], None] | None = None) -> list:
        """`config.n` PIL images for `prompt`; image i from seed `config.seed + i` (reproducible one by one)."""
        import torch

        config = config.for_model(self.folder)
        prompt = " ".join(str(prompt).split())
        if not prompt:
            raise ImagineError("the prompt is empty: describe the image to generate")
        size = config.size or self.native_size
        images = []
        for i in range(config.n):
            generator = torch.Generator(device="cpu").manual_seed(config.seed + i)
            kwargs = {"num_inference_steps": config.steps, "guidance_scale": config.guidance,
                      "height": size, "width": size, "generator": generator}
            try:
                out = self.pipe(prompt, **kwargs)
            except Exception as exc:
                raise ImagineError(f"the text-to-image model failed ({type(exc).__name__}: {exc})") from None
            images.append(out.images[0])
            if progress is not None:
                progress(i + 1, config.n)
        return images
