"""Regenerate the model card's figures from a model folder: metrics per beam size (table + JSON),
BLEU-4/time vs beam size plot, training curve plot, and captioned example images.

    python scripts/model_card_assets.py --model src/captioner/weights --run runs/lite2-224 --out src/captioner/weights

Every caption and number comes from running the model; nothing is typed by hand.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

from captioner.cli.common import DATA_HELP, default_data
from captioner.data import load_dataset  # noqa: E402
from captioner.evaluation.run import evaluate_model  # noqa: E402
from captioner.model.folder import DEFAULT_MODEL_DIR  # noqa: E402
from captioner.pipeline import Captioner  # noqa: E402

N_EXAMPLES = 6  # the first test images in split order: not picked by hand


def beam_table(model: str, data: str, beams, out: Path) -> list[dict]:
    rows = []
    for k in beams:
        s = evaluate_model(model, data, "test", beam_size=k)["scores"]
        rows.append({key: s[key] for key in ("beam_size", "bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l",
                                              "cider", "seconds_per_image", "n_images")})
        print(json.dumps(rows[-1]), flush=True)
    (out / "metrics_test.json").write_text(json.dumps(rows, indent=2))
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot([r["beam_size"] for r in rows], [r["bleu4"] for r in rows], "o-", color="tab:blue")
    ax.set_xlabel("beam size")
    ax.set_ylabel("test BLEU-4", color="tab:blue")
    ax2 = ax.twinx()
    ax2.plot([r["beam_size"] for r in rows], [1000 * r["seconds_per_image"] for r in rows], "s--", color="tab:red")
    ax2.set_ylabel("ms per image (end to end, batch 50)", color="tab:red")
    ax.set_title("Flickr8k test: BLEU-4 and time against beam size")
    fig.tight_layout()
    fig.savefig(out / "beam_size.png", dpi=110)
    return rows


def training_curve(run: Path, out: Path, scst_run: Path | None = None, kept_epoch: int | None = None) -> None:
    """Cross-entropy stage: loss and val BLEU-4 per epoch; SCST stage (if given): val BLEU-4, val
    CIDEr and the mean sampled reward at each validation."""
    rows = list(csv.DictReader(open(run / "log.csv")))
    ep = [int(r["epoch"]) for r in rows]
    panels = 2 if scst_run else 1
    fig, axes = plt.subplots(1, panels, figsize=(6 * panels, 3.6), squeeze=False)
    ax = axes[0][0]
    ax.plot(ep, [float(r["train_loss"]) for r in rows], "o-", color="tab:gray")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss", color="tab:gray")
    ax2 = ax.twinx()
    ax2.plot(ep, [float(r["val_bleu4"]) for r in rows], "o-", color="tab:green")
    ax2.set_ylabel("val BLEU-4 (beam 3)", color="tab:green")
    if kept_epoch:
        ax2.axvline(kept_epoch, color="tab:green", ls=":", lw=1)
    ax.set_title("1. cross-entropy (teacher forcing)")
    if scst_run:
        srows = list(csv.DictReader(open(scst_run / "log.csv")))
        x = [float(r["epoch"]) for r in srows]
        bx = axes[0][1]
        bx.plot(x, [float(r["val_bleu4"]) for r in srows], "o-", color="tab:green", label="val BLEU-4")
        bx.plot(x, [float(r["val_cider"]) for r in srows], "s-", color="tab:purple", label="val CIDEr")
        bx.set_xlabel("SCST epoch")
        bx.set_ylabel("val score (beam 3, length penalty 0)")
        bx.legend(loc="lower right")
        bx2 = bx.twinx()
        bx2.plot(x, [float(r["mean_reward"]) for r in srows], "^--", color="tab:orange")
        bx2.set_ylabel("mean sampled CIDEr-D reward", color="tab:orange")
        bx.set_title(f"2. self-critical sequence training (from epoch {kept_epoch or '?'})")
    fig.tight_layout()
    fig.savefig(out / "training_curve.png", dpi=110)


def examples(model: str, data: str, out: Path, beam: int = 3) -> None:
    ds = load_dataset(data)
    captioner = Captioner.load(model)
    ids = ds.split("test")[:N_EXAMPLES]
    results = list(captioner.caption_many([ds.image_path(i) for i in ids], beam_size=beam))
    tile, text_h = 224, 58
    sheet = Image.new("RGB", (3 * tile + 40, 2 * (tile + text_h) + 30), "white")
    draw = ImageDraw.Draw(sheet)
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:
        font = ImageFont.load_default()
    for n, (i, r) in enumerate(zip(ids, results)):
        x, y = 10 + (n % 3) * (tile + 10), 10 + (n // 3) * (tile + text_h + 10)
        sheet.paste(Image.open(ds.image_path(i)).convert("RGB").resize((tile, tile)), (x, y))
        words, lines, line = r.caption.split(), [], ""
        for w in words:
            if draw.textlength(line + " " + w, font=font) > tile:
                lines.append(line)
                line = w
            else:
                line = (line + " " + w).strip()
        lines.append(line)
        for k, text in enumerate(lines[:3]):
            draw.text((x, y + tile + 4 + 16 * k), text, fill="black", font=font)
    # Flickr8k's licence keeps its photos out of the repository: the picture goes to an ignored folder
    Path("runs").mkdir(exist_ok=True)
    sheet.save(Path("runs") / "examples.png")
    (out / "examples.json").write_text(json.dumps({i: r.caption for i, r in zip(ids, results)}, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--data", default=default_data(), required=default_data() is None,
                   help=DATA_HELP + " (default: $CAPTIONER_DATA)")
    p.add_argument("--run", default="runs/lite2-224", help="run folder with log.csv")
    p.add_argument("--scst-run", default=None, help="SCST run folder with log.csv (second panel)")
    p.add_argument("--kept-epoch", type=int, default=None, help="the cross-entropy epoch the model starts from")
    p.add_argument("--out", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--beams", default="1,3,5,10")
    p.add_argument("--skip-metrics", action="store_true")
    a = p.parse_args()
    data = a.data
    out = Path(a.out)
    if Path(a.run, "log.csv").exists():
        training_curve(Path(a.run), out, Path(a.scst_run) if a.scst_run else None, a.kept_epoch)
    examples(a.model, data, out)
    if not a.skip_metrics:
        beam_table(a.model, data, [int(b) for b in a.beams.split(",")], out)


if __name__ == "__main__":
    main()
