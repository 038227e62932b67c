"""`captioner studio`: the local web app."""
from __future__ import annotations

from captioner.cli.common import add_model_arg


def cmd_studio(args) -> int:
    from captioner.studio.app import launch

    launch(model_dir=args.model, gallery_dir=args.gallery, host=args.host, port=args.port, listen=args.listen)
    return 0



def register(sub) -> None:
    s = sub.add_parser("studio", help="open the caption studio (local web app)",
                       description="Start the Gradio caption studio on http://127.0.0.1:PORT.")
    add_model_arg(s)
    s.add_argument("--gallery", metavar="DIR", help="gallery folder (default: your data directory)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=7860)
    s.add_argument("--listen", action="store_true", help="open the studio to the network (0.0.0.0)")
    s.set_defaults(func=cmd_studio)
