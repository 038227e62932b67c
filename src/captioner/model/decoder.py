"""Show, Attend and Tell decoder: an LSTM with soft (additive) attention over the feature grid."""
from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """Additive attention: score_i = w^T tanh(W_f f_i + W_h h)."""

    def __init__(self, feature_dim: int, hidden_dim: int, attention_dim: int):
        super().__init__()
        self.feature_proj = nn.Linear(feature_dim, attention_dim)
        self.hidden_proj = nn.Linear(hidden_dim, attention_dim)
        self.score = nn.Linear(attention_dim, 1)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """W_f f_i for every grid cell; depends only on the image, so it is computed once."""
        return self.feature_proj(features)

    def forward(self, features, projected, h):
        """features (B, P, C), projected (B, P, A), h (B, H) -> context (B, C), alpha (B, P)."""
        e = self.score(torch.tanh(projected + self.hidden_proj(h).unsqueeze(1))).squeeze(2)
        alpha = torch.softmax(e, dim=1)
        context = torch.bmm(alpha.unsqueeze(1), features).squeeze(1)
        return context, alpha


class Decoder(nn.Module):
    def __init__(self, vocab_size: int, feature_dim: int, embed_dim: int = 512, hidden_dim: int = 512,
                 attention_dim: int = 512, dropout: float = 0.5):
        super().__init__()
        self.vocab_size = vocab_size
        self.attention = Attention(feature_dim, hidden_dim, attention_dim)
        self.embedding = nn.Embedding(vocab_size, embed_dim)
        self.lstm = nn.LSTMCell(embed_dim + feature_dim, hidden_dim)
        self.init_h = nn.Linear(feature_dim, hidden_dim)
        self.init_c = nn.Linear(feature_dim, hidden_dim)
        self.gate = nn.Linear(hidden_dim, feature_dim)  # sigmoid gate beta on the context
        self.dropout = nn.Dropout(dropout)
        self.out = nn.Linear(hidden_dim, vocab_size)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.out.weight, -0.1, 0.1)
        nn.init.zeros_(self.out.bias)

    def flatten(self, features: torch.Tensor) -> torch.Tensor:
        """(B, N, N, C) or (B, P, C) -> (B, P, C) in the decoder's dtype."""
        if features.dim() == 4:
            features = features.flatten(1, 2)
        return features.to(self.embedding.weight.dtype)

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The attention's image-side projection (B, P, A), computed once per image."""
        return self.attention.project(features)

    def init_state(self, features: torch.Tensor):
        """h0, c0 from the mean feature. features: (B, P, C)."""
        mean = features.mean(dim=1)
        return torch.tanh(self.init_h(mean)), torch.tanh(self.init_c(mean))

    def step(self, features, projected, words, h, c):
        """One time step for a batch of (image, partial caption) rows.

        Returns log-probabilities over the vocabulary (B, V), the new state and the attention (B, P).
        """
        h, c, alpha = self.advance(features, projected, words, h, c)
        return torch.log_softmax(self.out(self.dropout(h)), dim=1), h, c, alpha

    def advance(self, features, projected, words, h, c):
        """Attend, gate the context and run the LSTM cell: the new state and the attention (B, P)."""
        context, alpha = self.attention(features, projected, h)
        context = torch.sigmoid(self.gate(h)) * context
        h, c = self.lstm(torch.cat([self.embedding(words), context], dim=1), (h, c))
        return h, c, alpha

    def forward(self, features: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor):
        """Teacher forcing.

        captions (B, T) are `<start> w.. <end> <pad>..`; lengths count tokens including both ends.
        Returns log-probs (B, T-1, V) for predicting captions[:, 1:], and attention (B, T-1, P).
        Rows are processed only while they still have words (sorted by length inside).
        """
        features = self.flatten(features)
        B, T = captions.shape
        order = torch.argsort(lengths, descending=True)
        features, captions, lengths = features[order], captions[order], lengths[order]
        projected = self.attention.project(features)
        h, c = self.init_state(features)
        steps = int(lengths.max().item()) - 1
        hidden = features.new_zeros(B, T - 1, h.shape[1])
        alphas = features.new_zeros(B, T - 1, features.shape[1])
        n_active = [(lengths - 1 > t).sum().item() for t in range(steps)]
        for t in range(steps):
            n = n_active[t]
            h_n, c_n, alpha = self.advance(features[:n], projected[:n], captions[:n, t], h[:n], c[:n])
            h = torch.cat([h_n, h[n:]]) if n < B else h_n
            c = torch.cat([c_n, c[n:]]) if n < B else c_n
            hidden[:n, t] = h_n
            alphas[:n, t] = alpha
        # the output layer runs once over all steps (one large product instead of T small ones)
        logp = torch.log_softmax(self.out(self.dropout(hidden)), dim=2)
        inverse = torch.argsort(order)
        return logp[inverse], alphas[inverse]
