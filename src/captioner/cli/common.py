"""What several commands share: how a command is added to the parser (`add_command`), the options several
take (--model, --gallery, --json, --device; --data's help), and lines on stderr that stay lines (names
quoted, printed above a progress bar, our warnings as one line each)."""
from __future__ import annotations

import os
import sys

#: the environment variable naming the dataset when --data is not given
DATA_ENV = "CAPTIONER_DATA"
DATA_HELP = "a Flickr8k folder (with Flickr8k.token.txt and the split lists) or a Karpathy dataset_*.json"


#: --gallery's help where the command reads or writes the studio's gallery
GALLERY_HELP = "gallery folder (default: your data directory)"


def add_command(sub, name: str, run, summary: str, description: str, **parser_args):
    """Add the command `name` to `sub` (a parser's sub-commands) and return its parser: `summary` in the list of
    commands, `description` at the top of its --help (argparse joins the lines of a triple-quoted text into one
    paragraph), `run(args)` what it does. `parser_args` go to `add_parser` (e.g. `parents`)."""
    p = sub.add_parser(name, help=summary, description=description, **parser_args)
    p.set_defaults(func=run)
    return p


def add_model_arg(p):
    p.add_argument("--model", metavar="DIR", help="model folder (default: the model shipped in the package, "
                                                   "or $CAPTIONER_MODEL)")


def add_gallery_arg(p, help: str = GALLERY_HELP, **kwargs):
    p.add_argument("--gallery", metavar="DIR", help=help, **kwargs)


def add_json_arg(p, help: str):
    """--json: the command prints JSON (what it holds: `help`) instead of lines for people."""
    p.add_argument("--json", action="store_true", help=help)


def add_device_arg(p, help: str):
    """--device: cpu (the default), cuda or auto; `help` says what each does for this command."""
    p.add_argument("--device", default="cpu", help=help)


def default_data() -> str | None:
    """The dataset a command reads when --data is not given: $CAPTIONER_DATA, else None (the command asks for
    --data). The installed package knows no folder of its own to look in."""
    return os.environ.get(DATA_ENV) or None


def one_line(text: str) -> str:
    """``text`` with newlines, carriage returns and other unprintable characters escaped (``\\n``), so a
    file name inside it cannot break the line or forge another one."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def say(line: str, bar=None) -> None:
    """Print one line on stderr, above the progress bar when there is one (tqdm.write clears the bar,
    prints, and draws it again), never glued to it."""
    if bar is not None:
        bar.write(one_line(line), file=sys.stderr)
    else:
        print(one_line(line), file=sys.stderr, flush=True)


def show_image_warnings() -> None:
    """Our LargeImageWarning (an image over Pillow's ~89 MP bomb warning, within our limit) becomes one
    ``warning: ...`` line on stderr per image, printed above a progress bar; other warnings are shown as
    Python shows them."""
    import warnings

    from captioner.inputs.images import LargeImageWarning

    warnings.simplefilter("always", LargeImageWarning)
    shown = warnings.showwarning
    if getattr(shown, "captioner_lines", False):
        return

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, LargeImageWarning):
            from tqdm import tqdm

            tqdm.write(f"warning: {one_line(str(message))}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    show.captioner_lines = True
    warnings.showwarning = show
