"""Decoding: the decoding config, logit processors (the rules every decoder obeys), greedy and beam search."""
