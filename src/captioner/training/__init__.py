"""Training: one loop (device, seed, resume, log, validation, checkpoints) with cross-entropy and SCST steps.

`captioner.training.config` holds the settings (light to import); `loop` the loop; `cross_entropy`
and `scst` the two kinds of training.
"""
from captioner.training.config import RunConfig, SCSTConfig, TrainConfig

__all__ = ["RunConfig", "SCSTConfig", "TrainConfig", "run_training", "scst_train", "train"]


def __getattr__(name):  # the training code (torch and the model) only when it is used
    if name == "train":
        from captioner.training.cross_entropy import train

        return train
    if name == "scst_train":
        from captioner.training.scst import scst_train

        return scst_train
    if name == "run_training":
        from captioner.training.loop import run_training

        return run_training
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
