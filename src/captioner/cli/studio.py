"""`captioner studio`: the local web app."""
from __future__ import annotations

import argparse
import sys

from captioner.cli.common import add_command, add_gallery_arg, add_model_arg
from captioner.cli.dataclass_args import add_dataclass_args, config_from_args
from captioner.studio.config import StudioConfig


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The studio's options (shared by ``captioner studio`` and ``python -m captioner.studio``)."""
    add_model_arg(p)
    add_gallery_arg(p)
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    p.add_argument("--listen", action="store_true",
                   help="open the studio to the network (serve on 0.0.0.0); requests must then name a "
                        "loopback host, an IP address or an --allowed-host, and log in: a random access "
                        "token is printed at start (open the address with ?token=...) unless --token or "
                        "--auth is given")
    p.add_argument("--token", default=None, metavar="TOKEN",
                   help="the access token to ask for (at least 12 characters; kept in memory only); "
                        "also asks for it on loopback. Scripts send 'Authorization: Bearer TOKEN'")
    p.add_argument("--auth", default=None, metavar="USER:PASSWORD",
                   help="ask for this user name and password (HTTP Basic: over plain HTTP, use it on a "
                        "network you trust); also asks for it on loopback")
    p.add_argument("--allowed-host", dest="allowed_hosts", action="append", default=[], metavar="NAME",
                   help="also answer requests addressed to this host name (repeatable; e.g. the "
                        "computer's name on your network with --listen)")
    add_dataclass_args(p, StudioConfig)  # --max-upload-mb, --runtime, --device
    p.add_argument("--open", action="store_true", help="open a browser tab")
    p.add_argument("--t2i-model", metavar="DIR", default=None,
                   help="your own text-to-image model folder (diffusers format) for the Imagine tab; "
                        "needs pip install -e '.[imagine]'; nothing is downloaded")


def run(args) -> int:
    """Start the studio; problems a user can fix end as one ``error:`` line and exit code 2."""
    from captioner.errors import CaptionerError
    from captioner.storage import GalleryError

    try:
        config = config_from_args(StudioConfig, args)  # one line and exit code 2 for a value out of range
        from captioner.studio.app import launch

        launch(model_dir=args.model, gallery_dir=args.gallery, host=args.host, port=args.port,
               listen=args.listen, inbrowser=getattr(args, "open", False),
               allowed_hosts=getattr(args, "allowed_hosts", ()),
               max_upload_mb=config.max_upload_mb,
               t2i_model=getattr(args, "t2i_model", None), token=getattr(args, "token", None),
               auth=getattr(args, "auth", None), runtime=config.runtime, device=config.device)
    except (CaptionerError, GalleryError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # e.g. the network or a file system
        print(f"error: could not start the studio: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


cmd_studio = run


def register(sub) -> None:
    s = add_command(sub, "studio", cmd_studio, "open the caption studio (local web app)",
                    """Start the Gradio caption studio on http://127.0.0.1:PORT. Photos are captioned without
                    PyTorch where the model folder allows it (see --runtime).""")
    add_arguments(s)
