"""A studio as a new user meets it, for tests/test_studio_newuser.py: a gallery of photos with beam
candidates, tags and edits, and a video of four shots; a tiny model with the shipped confidence
calibration (so the Caption tab shows confidences)."""
from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path

from PIL import Image, ImageDraw

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WIDTHS = (1400, 390)
HEIGHTS = {1400: 900, 390: 844}
#: Dog photos saved with their chosen caption (all match the word "dog").
DOG_CAPTIONS = [f"a dog runs on the beach number {i}" for i in range(12)]
#: Saved after an edit: an unpicked candidate says "grass", the saved caption does not.
EDITED = "two dogs walking on a road"
EDITED_CANDIDATES = ["two dogs walking on the grass", "a dog on a road"]
#: Saved as is; only an unpicked candidate says "dog".
FRUIT = "a bowl of fruit on a table"
FRUIT_CANDIDATES = [FRUIT, "a dog is eating fruit"]
#: Saved as is; its tags say "dog", its caption does not.
TAGGED = "an animal sleeps on a sofa"
#: The video's shots (3 s each); only the fourth says "kite".
SHOTS = [(0.0, 3.0, "a red ball on a wall"), (3.0, 6.0, "a blue wall"), (6.0, 9.0, "a yellow square"),
         (9.0, 12.0, "a kite over a field")]


def maps(words: int, n: int = 7) -> list:
    out = []
    for w in range(words):
        grid = [[0.01] * n for _ in range(n)]
        grid[w % n][(3 * w) % n] = 1.0
        out.append(grid)
    return out


def candidates(captions: list[str], confidences: list[float | None] | None = None) -> list[dict]:
    confidences = confidences or [None] * len(captions)
    return [{"caption": c, "tokens": c.split(), "score": -3.0 - i, "normalized_score": -0.6 - 0.1 * i,
             "confidence": conf, "attention": maps(len(c.split()))}
            for i, (c, conf) in enumerate(zip(captions, confidences))]


def photo(seed: int, size=(200, 150)) -> Image.Image:
    img = Image.new("RGB", size, ((40 * seed) % 255, (90 + 30 * seed) % 255, (200 - 25 * seed) % 255))
    ImageDraw.Draw(img).ellipse((size[0] // 4, size[1] // 4, size[0] // 2 + seed % 40, 3 * size[1] // 4),
                                fill=(250 - seed, 240, 80 + seed))
    return img


def write_clip(path: Path) -> Path:
    from test_studio_video import write_video

    frames = []
    colours = [(200, 30, 30), (20, 40, 190), (230, 210, 20), (30, 160, 60)]
    for colour in colours:
        img = Image.new("RGB", (160, 120), colour)
        frames += [img] * 15  # 3 s at 5 fps
    return write_video(path, frames, fps=5)


def fill_gallery(folder: Path, clip: Path) -> dict:
    """The gallery the tests search: {name: item id}."""
    from captioner.storage import Gallery

    ids = {}
    with Gallery(folder) as g:
        for i, caption in enumerate(DOG_CAPTIONS):
            ids[f"dog{i}"] = g.save(photo(i), f"000000{39769 + i:06d}.jpg", caption,
                                    candidates=candidates([caption, "a dog in the water"], [0.44, 0.39]),
                                    confidence=0.44, beam_size=2, tags=[{"label": "dog", "score": 0.9}])
        ids["edited"] = g.save(photo(20), "walk.jpg", EDITED,  # saved with the user's edit, as the studio does
                               candidates=candidates(EDITED_CANDIDATES, [0.27, 0.38]), beam_size=2)
        ids["fruit"] = g.save(photo(21), "painting.jpg", FRUIT, candidates=candidates(FRUIT_CANDIDATES, [0.3, 0.2]),
                              confidence=0.3, beam_size=2)
        ids["tagged"] = g.save(photo(22), "sofa.jpg", TAGGED, candidates=candidates([TAGGED]),
                               tags=[{"label": "dog", "score": 0.6}], confidence=0.5, beam_size=1)
        poster = Image.new("RGB", (160, 120), (200, 30, 30))
        ids["video"] = g.save_video(clip, "four shots.mp4",
                                    [{"start": s, "end": e, "caption": c, "candidates": []} for s, e, c in SHOTS],
                                    poster=poster, duration=12.0)
    return ids


def calibrated_model(tiny_model_dir: Path, folder: Path) -> Path:
    """The tiny test model with the shipped confidence calibration beside it."""
    target = folder / "model"
    shutil.copytree(tiny_model_dir, target)
    shipped = resources.files("captioner").joinpath("weights", "confidence.json")
    (target / "confidence.json").write_text(shipped.read_text())
    return target
