"""What several commands share: the --model and --data options."""
from __future__ import annotations

from pathlib import Path

DATA_HELP = "a Flickr8k folder (with Flickr8k.token.txt and the split lists) or a Karpathy dataset_*.json"


def add_model_arg(p):
    p.add_argument("--model", metavar="DIR", help="model folder (default: the model shipped in the package, "
                                                   "or $CAPTIONER_MODEL)")


def default_data() -> str | None:
    for cand in (Path.cwd() / ".." / "shared" / "data" / "flickr8k", Path(__file__).resolve().parents[4] / "shared" / "data" / "flickr8k"):
        if (cand / "Flickr8k.token.txt").exists():
            return str(cand)
    return None


