"""Object hallucination of captions against caption-only references (CHAIR, Rohrbach et al. 2018,
"Object Hallucination in Image Captioning", adapted: no segmentation labels, only the human captions).

A fixed table of *concepts* (people, animals, vehicles, food, furniture and things, places and
settings, clothing), each with the words that name it (plurals follow) and the words that support it
in a reference (its synonyms, e.g. `snow` <- `snowy`, `skiing`). A caption *mentions* a concept when
it uses one of the concept's words (two-word names first: `hot dog` is food, not a dog; `teddy bear`
is a toy). A mention is **supported** when one of the photo's reference captions names the concept,
a synonym, a concept it covers (`animal` is supported by any animal; `food` by `pizza`) or the
general concept that covers it (`dog` by `animal`: the annotator saw an animal).

- **CHAIR-s**: the share of captions with at least one unsupported mention.
- **CHAIR-i**: the share of mentions (each concept counted once per caption) that are unsupported.
- **mention recall**: of the concepts that at least `CONSENSUS` references of a photo name (what the
  people agree is there), the share the caption names (or names through a covering/covered concept).

Coarse like CHAIR's COCO categories: all people words are one concept (`man` ~ `woman` ~ `skier`), so
"a man" for a photo of a woman is supported; "a man" for a plate of food is not. References name only
part of what a photo shows, so a mention of a present but unnamed object counts as unsupported: the
figures compare decodings on the same photos, they are not absolute error rates.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from captioner.model.vocab import tokenize

#: a concept named by at least this many of a photo's references is one recall counts
CONSENSUS = 2

# name: (words that mention it, extra words that only support it in a reference)
_CONCEPTS: dict[str, tuple[str, str]] = {
    # people (one concept, as CHAIR's `person`)
    "person": ("person man woman boy girl child kid guy lady baby toddler infant adult teenager teen "
               "player skier surfer snowboarder skateboarder biker cyclist bicyclist rider climber hiker "
               "swimmer runner dancer crowd spectator onlooker worker policeman soldier cowboy gentleman "
               "someone batter catcher pitcher motorcyclist chef student tourist athlete wrestler boxer "
               "performer musician singer guitarist drummer bride groom mother father son daughter brother "
               "sister youngster pedestrian passenger audience skater jockey goalie referee cop fisherman "
               "mom dad grandmother grandfather wife husband boyfriend girlfriend",
               "people men women children kids human humans he she his her him they someone's"),
    # animals
    "dog": ("dog puppy pup greyhound poodle terrier retriever collie labrador dachshund beagle pug husky "
            "chihuahua bulldog spaniel dalmatian rottweiler doberman sheepdog", "canine shepherd"),
    "cat": ("cat kitten kitty tabby", "feline"),
    "horse": ("horse pony foal stallion mare", "equestrian jockey"),
    "bird": ("bird duck goose seagull gull pigeon parrot owl eagle penguin flamingo ostrich hen rooster "
             "peacock macaw swan crow hawk heron dove", "flock"),
    "cow": ("cow cattle bull calf ox bison buffalo", "herd"),
    "sheep": ("sheep lamb", "flock"),
    "goat": ("goat", ""),
    "elephant": ("elephant", ""),
    "bear": ("bear panda", "grizzly"),
    "zebra": ("zebra", ""),
    "giraffe": ("giraffe", ""),
    "big cat": ("lion tiger leopard cheetah", ""),
    "monkey": ("monkey ape gorilla chimpanzee", ""),
    "deer": ("deer", ""),
    "fish": ("fish shark whale dolphin", ""),
    "small animal": ("squirrel rabbit bunny hamster", ""),
    "pig": ("pig hog", ""),
    "camel": ("camel llama", ""),
    "wild animal": ("wolf fox kangaroo koala otter hippopotamus", ""),
    "reptile": ("turtle lizard snake frog", ""),
    "insect": ("insect bug butterfly bee spider snail", ""),
    # vehicles
    "bicycle": ("bicycle bike bmx", "biking cycling biker cyclist bicyclist"),
    "motorcycle": ("motorcycle motorbike scooter moped", "motorcyclist"),
    "car": ("car taxi cab jeep suv van minivan", ""),
    "truck": ("truck pickup tractor forklift", ""),
    "bus": ("bus minibus tram streetcar trolley trolleybus", ""),
    "train": ("train locomotive subway", "railroad railway tracks"),
    "boat": ("boat ship kayak canoe raft sailboat yacht ferry gondola submarine speedboat lifeboat",
             "kayaking canoeing rafting sailing"),
    "airplane": ("airplane plane jet airliner aircraft warplane", "airport"),
    # sports things
    "skateboard": ("skateboard", "skateboarding skateboarder skating"),
    "surfboard": ("surfboard", "surfing surfer"),
    "snowboard": ("snowboard", "snowboarding snowboarder"),
    "ski": ("ski skis", "skiing skier"),
    "sled": ("sled sleigh", "sledding"),
    "kite": ("kite", ""),
    "frisbee": ("frisbee", ""),
    "ball": ("ball football basketball soccerball volleyball baseball", ""),
    "racket": ("racket racquet", "tennis"),
    # things
    "umbrella": ("umbrella parasol", ""),
    "bag": ("bag backpack purse handbag suitcase luggage", ""),
    "bottle": ("bottle", ""),
    "cup": ("cup mug teacup", ""),
    "bowl": ("bowl", ""),
    "plate": ("plate dish tray platter", ""),
    "utensil": ("fork knife spoon spatula ladle chopsticks", "utensils silverware"),
    "camera": ("camera tripod", "photographer photograph photographing"),
    "phone": ("phone cellphone smartphone", "cell"),
    "computer": ("computer laptop monitor keyboard", ""),
    "television": ("television tv", ""),
    "book": ("book", ""),
    "clock": ("clock", ""),
    "toy": ("toy doll", "stuffed"),
    "instrument": ("guitar violin cello harp banjo saxophone trumpet trombone harmonica flute piano drum",
                   "music band"),
    "microphone": ("microphone", ""),
    "sign": ("sign billboard", ""),
    "flag": ("flag", ""),
    "bench": ("bench", ""),
    "chair": ("chair stool", "seat"),
    "couch": ("couch sofa", ""),
    "table": ("table desk counter", "countertop"),
    "bed": ("bed crib cradle quilt", ""),
    "toilet": ("toilet", ""),
    "sink": ("sink", ""),
    "refrigerator": ("refrigerator fridge", ""),
    "oven": ("oven stove microwave toaster dishwasher", "appliance appliances"),
    "vase": ("vase", ""),
    "flower": ("flower", "bouquet floral"),
    "plant": ("plant", "potted"),
    "tree": ("tree", "forest woods wooded branch branches"),
    "fence": ("fence", "fenced"),
    "building": ("building house church tower skyscraper castle palace lighthouse library mosque", "buildings"),
    "bridge": ("bridge", ""),
    "fountain": ("fountain", ""),
    "tent": ("tent", "camping"),
    "stairs": ("stairs staircase steps", ""),
    "mirror": ("mirror", ""),
    "lamp": ("lamp lampshade", ""),
    "cabinet": ("cabinet bookcase wardrobe shelf", ""),
    "box": ("box", ""),
    # food
    "pizza": ("pizza", ""),
    "sandwich": ("sandwich burger hamburger cheeseburger", ""),
    "hot dog": ("hotdog", ""),
    "cake": ("cake cupcake dessert pie", ""),
    "donut": ("donut doughnut bagel", ""),
    "fruit": ("fruit apple banana lemon pineapple strawberry grape", ""),
    "vegetable": ("vegetable broccoli carrot cabbage cauliflower cucumber zucchini mushroom pepper squash "
                  "artichoke tomato potato salad", ""),
    "coffee": ("coffee espresso latte cappuccino", ""),
    "drink": ("beer wine juice soda", "drinks drinking"),
    "meal": ("meat bread soup cheese egg rice pasta burrito pretzel guacamole popsicle", ""),
    # places and settings
    "kitchen": ("kitchen", ""),
    "bathroom": ("bathroom", "bath bathtub shower"),
    "bedroom": ("bedroom", ""),
    "living room": ("", ""),
    "office": ("office", ""),
    "restaurant": ("restaurant cafe", "diner"),
    "store": ("store shop market supermarket", ""),
    "beach": ("beach shore coast seashore sand", "sandy"),
    "water": ("water ocean sea lake river pool stream pond creek wave waterfall puddle", "surf surfing "
              "swimming swims swim wet splashing"),
    "snow": ("snow", "snowy ski skis skiing skier snowboard snowboarding snowboarder sled sledding snowman"),
    "grass": ("grass lawn field meadow yard pasture", "grassy"),
    "street": ("street road sidewalk crosswalk alley highway intersection pavement city town downtown",
               "traffic urban"),
    "mountain": ("mountain hill hillside cliff slope volcano", "mountainous hilly"),
    "rock": ("rock boulder", "rocky"),
    "stage": ("stage", "concert"),
    "playground": ("playground", "slide swing swings"),
    "park": ("park", ""),
    "desert": ("desert", ""),
    # clothing
    "top": ("shirt jersey jacket coat sweater sweatshirt hoodie vest blouse uniform", "shirtless"),
    "dress": ("dress gown skirt", ""),
    "trousers": ("pants jeans shorts trousers", ""),
    "swimwear": ("swimsuit bikini trunks wetsuit", ""),
    "hat": ("hat cap helmet hood beanie bandana", ""),
    "glasses": ("glasses sunglasses goggles", ""),
    "shoe": ("shoe boot sneaker sandal sock", ""),
    "suit": ("suit tuxedo", ""),
    "costume": ("costume outfit clothes clothing", ""),
}

# two-word names (the second word singular), matched before single words
_PHRASES: dict[tuple[str, str], str] = {
    ("hot", "dog"): "hot dog", ("teddy", "bear"): "toy",
    ("living", "room"): "living room", ("cell", "phone"): "phone", ("fire", "hydrant"): "sign",
    ("stop", "sign"): "sign", ("traffic", "light"): "sign", ("ice", "cream"): "cake",
    ("german", "shepherd"): "dog", ("polar", "bear"): "bear", ("tennis", "racket"): "racket",
    ("t", "shirt"): "top", ("tank", "top"): "top", ("swimming", "pool"): "water", ("guinea", "pig"): "small animal",
    ("baseball", "bat"): "ball", ("dirt", "bike"): "motorcycle", ("stuffed", "animal"): "toy",
    ("sea", "lion"): "fish", ("bathing", "suit"): "swimwear", ("wet", "suit"): "swimwear",
    ("swim", "suit"): "swimwear", ("swimming", "trunk"): "swimwear",
}
#: general concepts and the concepts they cover (a general word is supported by any of them)
_COVERS: dict[str, tuple[str, ...]] = {
    "animal": ("dog", "cat", "horse", "bird", "cow", "sheep", "goat", "elephant", "bear", "zebra", "giraffe",
               "big cat", "monkey", "deer", "fish", "small animal", "pig", "camel", "wild animal", "reptile",
               "insect"),
    "vehicle": ("bicycle", "motorcycle", "car", "truck", "bus", "train", "boat", "airplane"),
    "food": ("pizza", "sandwich", "hot dog", "cake", "donut", "fruit", "vegetable", "meal", "coffee", "drink"),
    "room": ("kitchen", "bathroom", "bedroom", "living room", "office"),
}
_GENERAL_WORDS = {"animal": "animal creature pet", "vehicle": "vehicle", "food": "food meal snack dinner lunch "
                  "breakfast", "room": "room"}

_IRREGULAR = {"men": "man", "women": "woman", "people": "person", "children": "child", "feet": "foot",
              "geese": "goose", "mice": "mouse", "knives": "knife", "shelves": "shelf", "wolves": "wolf",
              "calves": "calf", "leaves": "leaf", "oxen": "ox", "teeth": "tooth", "ladies": "lady",
              "babies": "baby", "puppies": "puppy", "kitties": "kitty", "bunnies": "bunny", "ponies": "pony",
              "strawberries": "strawberry", "potatoes": "potato", "tomatoes": "tomato", "glasses": "glasses",
              "sunglasses": "sunglasses", "goggles": "goggles", "clothes": "clothes", "pants": "pants",
              "jeans": "jeans", "shorts": "shorts", "trousers": "trousers", "trunks": "trunks", "stairs": "stairs",
              "steps": "steps", "skis": "skis", "woods": "woods", "species": "species", "bus": "bus",
              "buses": "bus", "dress": "dress", "grass": "grass", "glass": "glass", "boss": "boss",
              "chopsticks": "chopsticks", "cactus": "cactus", "octopus": "octopus", "walrus": "walrus",
              "hippopotamus": "hippopotamus", "bison": "bison", "sheep": "sheep", "deer": "deer", "fish": "fish",
              "dishes": "dish", "boxes": "box", "benches": "bench", "couches": "couch", "sandwiches": "sandwich",
              "foxes": "fox", "peaches": "peach", "beaches": "beach", "churches": "church", "bushes": "bush",
              "dresses": "dress", "lunches": "lunch", "glasses'": "glasses"}


def _build():
    word_of: dict[str, str] = {}  # mention word -> concept
    support_of: dict[str, set[str]] = {}  # reference word -> concepts it supports
    for name, (words, support) in _CONCEPTS.items():
        for w in words.split():
            word_of[w] = name
            support_of.setdefault(w, set()).add(name)
        for w in support.split():
            support_of.setdefault(w, set()).add(name)
    for name, words in _GENERAL_WORDS.items():
        for w in words.split():
            word_of.setdefault(w, name)
            support_of.setdefault(w, set()).add(name)
    return word_of, support_of


_WORD_OF, _SUPPORT_OF = _build()
_PARENT = {c: g for g, cs in _COVERS.items() for c in cs}


def singular(word: str) -> str:
    """`dogs` -> `dog`, `men` -> `man` (for the table's words; others come back as they are)."""
    if word in _IRREGULAR:
        return _IRREGULAR[word]
    if word in _WORD_OF or word in _SUPPORT_OF:
        return word
    for cut, add in (("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(cut) and word[: len(word) - len(cut)] + add in _WORD_OF:
            return word[: len(word) - len(cut)] + add
    return word


def concept_of(word: str) -> str | None:
    """The concept a single caption word names (`puppies` -> `dog`), or None when it names none."""
    return _WORD_OF.get(singular(word))


def object_words() -> dict[str, str]:
    """Every single word that mentions a concept (singular forms) -> its concept."""
    return dict(_WORD_OF)


def concepts() -> list[str]:
    """The concept names, general ones (`animal`, `vehicle`, `food`, `room`) included."""
    return list(_CONCEPTS) + list(_COVERS)


@dataclass(frozen=True)
class Mention:
    word: str  # as written (`hot dog`, `puppies`)
    concept: str
    position: int  # token index of its first word


def _tokens(caption: str | Sequence[str]) -> list[str]:
    return tokenize(caption) if isinstance(caption, str) else [t.lower() for t in caption]


def mentions(caption: str | Sequence[str]) -> list[Mention]:
    """The concept mentions of a caption (a string or its tokens), in order; a two-word name
    (`hot dog`, `teddy bear`) is one mention and its words are not read again."""
    toks = _tokens(caption)
    out, i = [], 0
    while i < len(toks):
        nxt = toks[i + 1] if i + 1 < len(toks) else ""
        pair = next((p for p in ((toks[i], nxt), (toks[i], nxt[:-1] if nxt.endswith("s") else nxt))
                     if p in _PHRASES), None)
        if pair is not None:
            out.append(Mention(f"{toks[i]} {nxt}", _PHRASES[pair], i))
            i += 2
            continue
        c = concept_of(toks[i])
        if c is not None:
            out.append(Mention(toks[i], c, i))
        i += 1
    return out


def named_concepts(text: str | Sequence[str]) -> set[str]:
    """The concepts a reference caption names or supports (mentions plus support-only words: `snowy`)."""
    toks = _tokens(text)
    named = {m.concept for m in mentions(toks)}
    for t in toks:
        named |= _SUPPORT_OF.get(singular(t), set())
    return named


def is_supported(concept: str, named: set[str]) -> bool:
    """Whether `concept` is supported by the concepts `named` by the references: the concept itself,
    its general concept (`animal` for `dog`) or, for a general concept, any concept it covers."""
    if concept in named or _PARENT.get(concept) in named:
        return True
    return any(c in named for c in _COVERS.get(concept, ()))


@dataclass(frozen=True)
class CaptionCheck:
    mentioned: tuple[str, ...]  # concepts, each once, in order of first mention
    unsupported: tuple[str, ...]
    consensus: tuple[str, ...]  # concepts at least CONSENSUS references name
    recalled: tuple[str, ...]  # those of `consensus` the caption names


def check_caption(caption: str | Sequence[str], references: Sequence[str], consensus: int = CONSENSUS) -> CaptionCheck:
    """One caption against its photo's references."""
    per_ref = [named_concepts(r) for r in references]
    named = set().union(*per_ref) if per_ref else set()
    mentioned = tuple(dict.fromkeys(m.concept for m in mentions(caption)))
    counts = Counter(c for ref in per_ref for c in ref)
    agreed = tuple(sorted(c for c, n in counts.items() if n >= consensus))
    said = set(mentioned)
    recalled = tuple(c for c in agreed if is_supported(c, said))
    return CaptionCheck(mentioned, tuple(c for c in mentioned if not is_supported(c, named)), agreed, recalled)


@dataclass(frozen=True)
class HallucinationScores:
    chair_s: float  # percent of captions with an unsupported mention
    chair_i: float  # percent of mentions unsupported
    recall: float  # percent of consensus concepts the captions name
    n_captions: int
    n_mentions: int
    n_unsupported: int

    def to_dict(self) -> dict:
        return {"chair_s": round(self.chair_s, 1), "chair_i": round(self.chair_i, 1), "recall": round(self.recall, 1),
                "n_captions": self.n_captions, "n_mentions": self.n_mentions, "n_unsupported": self.n_unsupported}


def hallucination_scores(pairs: Iterable[tuple[str | Sequence[str], Sequence[str]]],
                         consensus: int = CONSENSUS) -> HallucinationScores:
    """CHAIR-s, CHAIR-i and mention recall (percent) over (caption, its references) pairs."""
    n = bad_caps = n_ment = n_bad = n_agreed = n_recalled = 0
    for caption, refs in pairs:
        c = check_caption(caption, refs, consensus)
        n += 1
        bad_caps += bool(c.unsupported)
        n_ment += len(c.mentioned)
        n_bad += len(c.unsupported)
        n_agreed += len(c.consensus)
        n_recalled += len(c.recalled)
    if n == 0:
        raise ValueError("no captions to score")
    return HallucinationScores(100 * bad_caps / n, 100 * n_bad / max(n_ment, 1), 100 * n_recalled / max(n_agreed, 1),
                               n, n_ment, n_bad)


def chair_s(pairs) -> float:
    return hallucination_scores(pairs).chair_s


def chair_i(pairs) -> float:
    return hallucination_scores(pairs).chair_i


def mention_recall(pairs) -> float:
    return hallucination_scores(pairs).recall
