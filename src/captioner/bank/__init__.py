"""The sentence bank: human captions (COCO, Flickr30k) the captioner can say, offered in place of a generated
caption when the photo's evidence and the captioner's own likelihood favour one (issue 28).

- `store`: the bank file beside the weights (`sentence_bank.safetensors`: token ids, language prior).
- `build`: filtering the caption corpora into a bank (scripts/build_sentence_bank.py).
- `scoring`: batched teacher-forced likelihood of many sentences for each photo.
- `runtime`: `SentenceBank.choose`: shortlist, re-score, and the choice against the generated caption.
"""
from captioner.bank.store import BANK_FILE, BankData, load_bank, save_bank

__all__ = ["BANK_FILE", "BankData", "load_bank", "save_bank"]
