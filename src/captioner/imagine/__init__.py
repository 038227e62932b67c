"""Images from captions (an optional extra: ``pip install -e ".[imagine]"``).

    from captioner import Captioner
    from captioner.imagine import ImagineConfig, TextToImage, imagine, save_imagined

    t2i = TextToImage("~/models/sd-turbo")            # a diffusers folder you already have; nothing is downloaded
    items = imagine("a dog running on the beach", t2i, Captioner.load(), ImagineConfig(n=2))
    for item in items:
        print(item.match.caption, item.match.prompt_score)   # the caption it gets back, the prompt's likelihood
    save_imagined(items, "imagined")

Importing this package needs neither diffusers nor transformers; `TextToImage` says what to install.
"""
from captioner.imagine.config import T2I_MODEL_ENV, ImagineConfig
from captioner.imagine.matching import PromptMatch, match_prompt
from captioner.imagine.run import Imagined, imagine, save_imagined
from captioner.imagine.t2i import INSTALL_HINT, ImagineError, TextToImage, missing_packages, model_folder

__all__ = ["INSTALL_HINT", "T2I_MODEL_ENV", "ImagineConfig", "ImagineError", "Imagined", "PromptMatch", "TextToImage",
           "imagine", "match_prompt", "missing_packages", "model_folder", "save_imagined"]
