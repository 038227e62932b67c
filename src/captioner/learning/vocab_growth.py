"""Growing a model's vocabulary with the words of the user's captions it lacks (giraffe, refrigerator,
the family dog's name), so the learned model can say them.

A new word is appended after the model's own ids (old ids keep their meaning), with its embedding and
output row initialised sensibly before fine-tuning:

- a word of the model folder's `new_words.json` (e.g. `zebra` <- `horse`, `cow`): the mean of its
  proxies' rows, and the output bias of its likeliest proxy, lowered by `NEW_WORD_BIAS_DROP` so the new
  word wins only where fine-tuning makes it;
- a form of a known word (`bears`, `elephant's`, `puppies`): that word's rows, as a proxy;
- any other word: the model's `<unk>` rows (where the training captions' rare words went), the
  embedding moved half-way toward the mean embedding of the words around it in the user's captions.
"""
from __future__ import annotations

import math
from collections import Counter

import torch

from captioner.model.vocab import Vocab, tokenize

#: how much lower (in logits) a new word's output bias starts than its proxy's
NEW_WORD_BIAS_DROP = math.log(4.0)
#: words longer than this, or with digits only, are not added (serial numbers, typos of pasted text)
MAX_WORD_LEN = 24


def new_words_in(captions: list[str], vocab: Vocab, min_count: int = 1, limit: int = 500) -> list[str]:
    """The words of `captions` the vocabulary lacks, seen at least `min_count` times, most frequent first
    (at most `limit`)."""
    counts = Counter(w for c in captions for w in tokenize(c) if w not in vocab.stoi)
    words = [w for w, n in counts.items() if n >= min_count and len(w) <= MAX_WORD_LEN and not w.isdigit()]
    return sorted(words, key=lambda w: (-counts[w], w))[:limit]


def word_stem(word: str, vocab: Vocab) -> str | None:
    """The known word `word` is a plural or possessive of (`bears` -> `bear`, `puppies` -> `puppy`)."""
    for cut, add in (("'s", ""), ("s'", ""), ("ies", "y"), ("es", ""), ("s", "")):
        if word.endswith(cut) and len(word) > len(cut) + 1 and word[: -len(cut)] + add in vocab.stoi:
            return word[: -len(cut)] + add
    return None


def grow_decoder(decoder, vocab: Vocab, words: list[str], captions: list[str], proxies: dict[str, tuple[str, ...]]):
    """Append `words` to `decoder` (in place: embedding and output layer get new rows) and return the
    grown `Vocab` and how each word was initialised ({word: "proxies: a, b" | "<unk> + context"})."""
    if not words:
        return vocab, {}
    emb, out = decoder.embedding.weight.data, decoder.out.weight.data
    bias = decoder.out.bias.data
    unk = vocab.unk_id
    context: dict[str, Counter] = {w: Counter() for w in words}
    for c in captions:
        toks = tokenize(c)
        for i, t in enumerate(toks):
            if t in context:
                for n in toks[max(0, i - 2) : i + 3]:
                    if n in vocab.stoi and n != t:
                        context[t][vocab.stoi[n]] += 1
    new_emb, new_out, new_bias, how = [], [], [], {}
    for w in words:
        known = [p for p in proxies.get(w, ()) if p in vocab.stoi]
        stem = word_stem(w, vocab)
        if stem and not known:
            known = [stem]
        if known:
            ids = torch.tensor([vocab.stoi[p] for p in known])
            new_emb.append(emb[ids].mean(0))
            new_out.append(out[ids].mean(0))
            new_bias.append(bias[ids].max() - NEW_WORD_BIAS_DROP)
            how[w] = f"form of: {stem}" if known == [stem] else "proxies: " + ", ".join(known)
        else:
            around = context[w]
            e = emb[unk].clone()
            if around:
                ids = torch.tensor(list(around))
                weights = torch.tensor([float(n) for n in around.values()])
                e = 0.5 * e + 0.5 * (emb[ids] * weights[:, None]).sum(0) / weights.sum()
            new_emb.append(e)
            new_out.append(out[unk].clone())
            new_bias.append(bias[unk].clone())
            how[w] = "<unk> + context"
    n_old = len(vocab)
    n_new = n_old + len(words)
    embedding = torch.nn.Embedding(n_new, emb.shape[1])
    embedding.weight.data = torch.cat([emb, torch.stack(new_emb)])
    linear = torch.nn.Linear(out.shape[1], n_new)
    linear.weight.data = torch.cat([out, torch.stack(new_out)])
    linear.bias.data = torch.cat([bias, torch.stack(new_bias)])
    decoder.embedding, decoder.out, decoder.vocab_size = embedding, linear, n_new
    return Vocab(list(vocab.itos) + list(words)), how
