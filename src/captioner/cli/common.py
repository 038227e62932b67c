"""What several commands share: the --model and --data options."""
from __future__ import annotations

import os

#: the environment variable naming the dataset when --data is not given
DATA_ENV = "CAPTIONER_DATA"
DATA_HELP = "a Flickr8k folder (with Flickr8k.token.txt and the split lists) or a Karpathy dataset_*.json"


def add_model_arg(p):
    p.add_argument("--model", metavar="DIR", help="model folder (default: the model shipped in the package, "
                                                   "or $CAPTIONER_MODEL)")


def default_data() -> str | None:
    """The dataset a command reads when --data is not given: $CAPTIONER_DATA, else None (the command asks for
    --data). The installed package knows no folder of its own to look in."""
    return os.environ.get(DATA_ENV) or None


