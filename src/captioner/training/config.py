"""The settings of training runs: `TrainConfig` (`captioner train`) and `SCSTConfig` (`captioner scst`),
both a `RunConfig` (what the loop itself needs). Each field carries its CLI help and its range, so
the command-line flags, their defaults and the checks are generated from here (captioner.settings,
cli/train.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from captioner.decoding.config import MAX_BEAM_SIZE, MAX_CAPTION_LEN
from captioner.errors import ConfigError
from captioner.settings import Settings, max_threads, setting


@dataclass
class RunConfig(Settings):
    """Settings every training run has (the loop's); `TrainConfig` and `SCSTConfig` add their own."""

    grad_clip: float = setting(5.0, "clip the gradients' total norm to this", above=0)
    val_beam_size: int = setting(3, "beam size of the validation's beam search", lo=1, hi=MAX_BEAM_SIZE)
    val_images: int = setting(0, "validate on the first N val images (0: all)", lo=0)
    seed: int = setting(0, "random seed (initial weights, batch order, dropout, sampling)", lo=0)
    threads: int = setting(0, "CPU threads for torch (0: torch's default)", lo=0, hi=max_threads)
    device: str = setting("auto", "auto, cpu, cuda or cuda:N")


@dataclass
class TrainConfig(RunConfig):
    epochs: int = setting(20, "epochs at most", lo=1)
    batch_size: int = setting(64, "captions per batch", lo=1)
    lr: float = setting(4e-4, "learning rate of the decoder", above=0)
    encoder_lr: float = setting(1e-4, "learning rate of the backbone's fine-tuned blocks", above=0)
    attention_reg: float = setting(1.0, "doubly stochastic attention regularisation weight", lo=0)
    label_smoothing: float = setting(0.0, "label smoothing of the cross-entropy", lo=0, hi=1)
    min_word_freq: int = setting(5, "words seen fewer times in the training captions become <unk>", lo=1)
    max_caption_len: int = setting(30, "longest caption trained on (and the model's decoding max_len)",
                                   lo=1, hi=MAX_CAPTION_LEN)
    lr_decay: float = setting(0.5, "the learning rates are multiplied by this on a plateau", above=0, hi=1)
    lr_patience: int = setting(1, "epochs without val BLEU-4 gain before the learning rates are decayed", lo=1)
    patience: int = setting(3, "epochs without val BLEU-4 gain before training stops", lo=1)
    keep_epochs: bool = setting(False, "also save every epoch's model to OUT/epoch-N/")


@dataclass
class SCSTConfig(RunConfig):
    epochs: int = setting(3, "passes over the training images", lo=1)
    images_per_batch: int = setting(50, "training images per batch", lo=1)
    samples: int = setting(5, "captions sampled per image", lo=1)
    baseline: str = setting("mean", "reward baseline: the mean of the image's other samples, or its greedy caption",
                            choices=("mean", "greedy"))
    sample_dropout: bool = setting(False, "sample with dropout active (train mode) instead of from the model as it decodes")
    lr: float = setting(2e-5, "learning rate", above=0)
    max_sample_len: int = setting(20, "longest sampled caption", lo=1, hi=MAX_CAPTION_LEN)
    val_every: int = setting(0, "batches between validations (0: once per epoch)", lo=0)

    def validate(self):
        super().validate()
        if self.baseline == "mean" and self.samples < 2:
            raise ConfigError("--baseline mean needs at least 2 --samples per image (or use --baseline greedy)")
        return self


