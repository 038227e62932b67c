"""`LearnConfig`: the settings of `captioner learn`, each with its CLI help and range (checked when the
config is made, captioner.settings; the flags are generated from it, cli/learn.py)."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from captioner.settings import Settings, setting

#: what `train` may name: which decoder weights fine-tuning changes (the rest stay the original's)
PARTS = {
    "decoder": ("embedding", "attention", "lstm", "init_h", "init_c", "gate", "out"),
    "language": ("embedding", "lstm", "out"),
    "words": ("embedding", "out"),
}


@dataclass
class LearnConfig(Settings):
    epochs: int = setting(12, "passes over the edits", lo=1, hi=1000)
    batch_size: int = setting(16, "edits per step", lo=1, hi=1024)
    lr: float = setting(2e-3, "Adam learning rate", above=0, hi=1.0)
    train: str = setting("words", "which decoder weights change: decoder (all), language (embedding, LSTM, "
                         "output) or words (embedding and output only)", choices=tuple(PARTS))
    distill: float = setting(1.0, "weight of keeping the original model's own predictions (on the photos left "
                             "unedited, else on the edited photos' original captions): forgetting control",
                             lo=0, hi=100)
    l2: float = setting(0.05, "weight of the pull toward the original weights (summed squared change): "
                        "forgetting control", lo=0, hi=1e6)
    held_out: float = setting(0.2, "share of the edits held out to measure the learned model, with at least "
                              "--min-held-out-edits edits", lo=0, hi=0.5)
    min_held_out_edits: int = setting(20, "hold edits out (and refuse a worse model) from this many edits on",
                                      lo=2)
    retrain_all: bool = setting(True, "once the held-out check passes, learn again from every edit (the held-out "
                                "ones too) for the written model; --no-retrain-all writes the checked model")
    calibration_min_edits: int = setting(30, "refit the confidence calibration from this many held-out edits on "
                                         "(fewer: the base model's is kept)", lo=2)
    new_words: bool = setting(True, "add the words of the edits the model lacks to its vocabulary")
    checkpoint_every: int = setting(20, "save progress every N steps (a killed run resumes from there)", lo=1)
    seed: int = setting(0, "random seed (held-out choice, batch order, dropout)", lo=0)
    threads: int = setting(0, "CPU threads for torch (0: torch's default)", lo=0, hi=1024)

    def fingerprint_fields(self) -> dict:
        """The settings a resumed run must share with the one it continues."""
        d = asdict(self)
        d.pop("threads")
        d.pop("checkpoint_every")
        return d
