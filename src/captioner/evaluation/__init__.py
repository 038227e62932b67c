"""Evaluation: caption metrics (BLEU, METEOR, ROUGE-L, CIDEr) and scoring a model on a split."""
