"""Prompt codes: what a frozen sentence encoder makes of a prompt, written as a few tokens the policy reads first.

The `cpu` policy is a small model trained from scratch with the loss on the flow only, so the words of a prompt
never come to mean much to it. The reward's frozen prompt encoder (all-MiniLM-L6-v2) already maps a prompt to a
vector that means something. Each codebook is a k-means clustering of those vectors over the training prompts;
a prompt gets one code per codebook, written as `<pc{book}_{code}>` tokens before its text
(`<pc0_3><pc1_41> a castle at dawn`). Coarse and fine codebooks give the policy both the style family and a
finer neighbourhood to condition on. The codebooks, the encoder settings and the token names are saved with the
policy (`prompt_codes.json`), so every sampling path (evaluate, generate, serving) codes a prompt the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from flowrl.io import read_json, write_json

CODES_FILE = "prompt_codes.json"


def code_token(book: int, code: int) -> str:
    """The token of `code` in codebook `book`.

    >>> code_token(1, 41)
    '<pc1_41>'
    """
    return f"<pc{book}_{code}>"


class PromptCodes:
    """k-means codebooks over unit-norm prompt embeddings, and the encoder settings that made them.

    Args:
        centroids: one (K_b, D) array per codebook.
        encoder: the `reward` section fields (source, model, tiny) naming the frozen prompt encoder.
        max_length: tokens of a prompt the encoder reads.
    """

    def __init__(self, centroids: Sequence[np.ndarray], encoder: dict, max_length: int):
        self.centroids = [np.asarray(c, dtype=np.float32) for c in centroids]
        self.encoder, self.max_length = dict(encoder), int(max_length)
        self._embedder = None

    @classmethod
    def fit(
        cls, embeddings: np.ndarray, sizes: Sequence[int], seed: int, encoder: dict, max_length: int, embedder=None
    ) -> PromptCodes:
        """One k-means codebook of each size in `sizes` over `embeddings` (N, D); a size above N is cut to N.

        Args:
            embedder: the `PromptEmbedder` that made `embeddings` (reused to code further prompts).
        """
        from sklearn.cluster import KMeans

        embeddings = np.asarray(embeddings, dtype=np.float32)
        if len(embeddings) == 0:
            raise ValueError("prompt codes need at least one prompt embedding to fit")
        books = [
            KMeans(n_clusters=min(k, len(embeddings)), n_init=3, random_state=seed + i).fit(embeddings).cluster_centers_
            for i, k in enumerate(sizes)
        ]
        codes = cls(books, encoder, max_length)
        codes._embedder = embedder
        return codes

    def tokens(self) -> list[str]:
        """Every code token, codebook by codebook."""
        return [code_token(b, k) for b, book in enumerate(self.centroids) for k in range(len(book))]

    def codes(self, embeddings: np.ndarray) -> np.ndarray:
        """(N, books) index of the nearest centroid of each codebook."""
        embeddings = np.asarray(embeddings, dtype=np.float32).reshape(len(embeddings), -1)
        out = [((embeddings[:, None, :] - book[None]) ** 2).sum(-1).argmin(1) for book in self.centroids]
        return np.stack(out, axis=1) if out else np.zeros((len(embeddings), 0), dtype=np.int64)

    def prefixes(self, embeddings: np.ndarray) -> list[str]:
        """The code tokens of each embedding, joined."""
        return ["".join(code_token(b, int(k)) for b, k in enumerate(row)) for row in self.codes(embeddings)]

    def embedder(self, cache_path: str | Path | None = None):
        """The frozen prompt encoder these codes were fitted on (loaded on first use; `cache_path`: read-only cache)."""
        if self._embedder is None:
            from flowrl.params.model import RewardConfig
            from flowrl.reward.prompt_cache import PromptEmbedder

            self._embedder = PromptEmbedder(RewardConfig.model_validate(self.encoder), self.max_length, cache_path)
        return self._embedder

    def apply(self, prompts: Sequence[str], embeddings: np.ndarray | None = None) -> list[str]:
        """`prompts` with their code tokens in front (embedded here unless `embeddings` are given)."""
        if embeddings is None:
            embeddings = self.embedder().embed(list(prompts))
        return [f"{prefix} {p.strip()}" for prefix, p in zip(self.prefixes(embeddings), prompts, strict=True)]

    def save(self, folder: str | Path) -> Path:
        """Write `prompt_codes.json` into `folder`."""
        return write_json(
            Path(folder) / CODES_FILE,
            {"encoder": self.encoder, "max_length": self.max_length, "centroids": [c.tolist() for c in self.centroids]},
        )

    @classmethod
    def load(cls, folder: str | Path) -> PromptCodes | None:
        """The codes saved with a trained policy, or None when it reads the prompt text alone."""
        path = Path(folder) / CODES_FILE
        if not path.exists():
            return None
        spec = read_json(path)
        return cls([np.asarray(c, dtype=np.float32) for c in spec["centroids"]], spec["encoder"], spec["max_length"])


def coded_prompts(codes: PromptCodes | None, prompts: Sequence[str]) -> list[str]:
    """What the policy reads for `prompts`: coded when it was trained with codes, else the prompts unchanged."""
    return list(prompts) if codes is None else codes.apply(prompts)
