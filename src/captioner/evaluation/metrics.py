"""Caption metrics as the literature reports them: BLEU-1..4, METEOR, ROUGE-L, CIDEr.

Uses the COCO caption evaluation tools (pycocoevalcap). Its PTB tokenizer and METEOR need Java;
without Java the captions are tokenised in Python the same way (lower case, punctuation removed),
METEOR is reported as None and named in `missing`.
"""
from __future__ import annotations

import shutil
from collections.abc import Mapping, Sequence

from captioner.model.vocab import tokenize

METRIC_KEYS = ("bleu1", "bleu2", "bleu3", "bleu4", "meteor", "rouge_l", "cider")


def java_available() -> bool:
    return shutil.which("java") is not None


def _tokenize(predictions, references, use_java: bool):
    if use_java:
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        tok = PTBTokenizer()
        gts = tok.tokenize({k: [{"caption": c} for c in references[k]] for k in predictions})
        res = tok.tokenize({k: [{"caption": predictions[k]}] for k in predictions})
        return gts, res
    gts = {k: [" ".join(tokenize(c)) for c in references[k]] for k in predictions}
    res = {k: [" ".join(tokenize(predictions[k]))] for k in predictions}
    return gts, res


def score_captions(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]],
                   metrics: Sequence[str] = METRIC_KEYS, use_java: bool | None = None) -> dict:
    """Corpus-level scores in percent (0-100), plus `n_images` and `missing` (metrics not computed)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if not predictions:
        raise ValueError("no captions to score")
    use_java = java_available() if use_java is None else use_java
    gts, res = _tokenize(predictions, references, use_java)
    out: dict = {"n_images": len(predictions), "missing": []}
    if any(m.startswith("bleu") for m in metrics):
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
        for n in range(4):
            out[f"bleu{n + 1}"] = 100 * bleu[n]
    if "rouge_l" in metrics:
        out["rouge_l"] = 100 * float(Rouge().compute_score(gts, res)[0])
    if "cider" in metrics:
        out["cider"] = 100 * float(Cider().compute_score(gts, res)[0])
    if "meteor" in metrics:
        if use_java:
            from pycocoevalcap.meteor.meteor import Meteor

            m = Meteor()
            try:
                out["meteor"] = 100 * float(m.compute_score(gts, res)[0])
            finally:
                with m.lock:
                    m.meteor_p.kill()
        else:
            out["meteor"] = None
            out["missing"].append("meteor (needs Java: apt-get install default-jre-headless)")
    return out
