"""Each photo's prior: how likely the captioner finds *any* description for it.

Some photos make every text likely (plain, common scenes: "a dog runs through the grass" fits many
descriptions a little), others none. Ranking by the raw likelihood of a query would put the former
first for every query, so each photo's mean likelihood over a fixed set of everyday captions is
subtracted (weighted, see `FindConfig.prior_weight`). The set is drawn once from Flickr8k's training
captions (seed 15), never from the validation or test photos.
"""
from __future__ import annotations

import numpy as np

from captioner.retrieval.tokens import query_tokens

GENERIC_CAPTIONS = (
    "the woman wearing glasses is painting the face of the blonde girl",
    "a child in a striped shirt is walking along a wall",
    "a baby is sitting in his high chair between a person 's arms",
    "four girls jump in the sand at the beach",
    "two dogs stand back to back in the ocean",
    "two girls riding an atv",
    "a woman and dog running down an asphalt , tree lined road",
    "a young girl with a painted face runs in a backyard",
    "one dog is trying to bite another",
    "a dog and cat laying down together",
    "a black and brown dog is running and splashing in the water",
    "a hiker climbs a mountain on a windy day",
    "the little boy in a yellow life jacket and goggles jumps into the pool",
    "a group of horses and their riders are racing each other",
    "the girl is sitting in the woods",
    "two brown dogs walking through snow",
    "a woman poses with her white dog on a sidewalk",
    "a boy in a blue shirt and shorts jumping a bike with a ramp",
    "a few people sit together on the snowy mountaintop",
    "a white dog is tugging on a black rope",
    "a sumo wrestler in black begins to push another in blue out of the ring",
    "the man in the red shirt is taking a picture of the two people hugging",
    "a man in a wetsuit diving out of a helicopter low over the ocean",
    "an old woman is looking into the camera",
)


def photo_priors(scorer, photos, vocab, n_captions: int = 8) -> np.ndarray:
    """Each photo's mean length-normalised log-likelihood over the first `n_captions` generic captions: (n,).
    `scorer`: a `likelihood.Scorer` or a `numpy_likelihood.NumpyScorer`; `photos`: its prepared photos."""
    if len(photos) == 0:
        return np.zeros(0, np.float32)
    texts = GENERIC_CAPTIONS[:n_captions]
    total = np.zeros(len(photos), np.float64)
    for text in texts:
        total += scorer.text_likelihood(photos, query_tokens(vocab, text))
    return (total / len(texts)).astype(np.float32)
