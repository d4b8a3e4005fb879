"""A BERT encoder forward in plain torch: the frozen prompt encoder (all-MiniLM-L6-v2) without importing
transformers' model code, which costs ~1.5 s of `flowrl generate`'s 5 s on the 2-core box.

Same hidden states as `transformers.BertModel` (tests/reward/test_plain_bert.py compares them), from the
encoder folder's `config.json` and `model.safetensors`. It covers absolute positions and GELU (MiniLM, BERT);
`plain_bert_problem` says why another encoder loads through transformers as before.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

CONFIG, WEIGHTS = "config.json", "model.safetensors"


def plain_bert_problem(folder: str | Path) -> str | None:
    """Why `PlainBert` cannot run the encoder in `folder`, or None when it can."""
    folder = Path(folder)
    if not (folder / CONFIG).exists() or not (folder / WEIGHTS).exists():
        return f"{folder} holds no {CONFIG} + {WEIGHTS}"
    cfg = json.loads((folder / CONFIG).read_text())
    checks = {
        "model_type is not bert": cfg.get("model_type") != "bert",
        "hidden_act is not gelu": cfg.get("hidden_act") != "gelu",
        "positions are not absolute": cfg.get("position_embedding_type", "absolute") != "absolute",
    }
    return "; ".join(what for what, bad in checks.items() if bad) or None


class PlainBert:
    """BERT weights and a forward; called like `BertModel` (`model(**batch).last_hidden_state`)."""

    def __init__(self, config: dict, weights: dict[str, torch.Tensor]):
        self.config = SimpleNamespace(**config)
        self.w = {k.removeprefix("bert."): v.float() for k, v in weights.items()}
        self.heads = config["num_attention_heads"]
        self.eps = config.get("layer_norm_eps", 1e-12)

    @classmethod
    def from_folder(cls, folder: str | Path) -> PlainBert:
        from safetensors.torch import load_file

        folder = Path(folder)
        return cls(json.loads((folder / CONFIG).read_text()), load_file(str(folder / WEIGHTS)))

    def parameters(self):
        """For `model_device`: where the weights are."""
        return iter(self.w.values())

    def _linear(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.linear(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        return F.layer_norm(x, x.shape[-1:], self.w[name + ".weight"], self.w[name + ".bias"], self.eps)

    def __call__(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> SimpleNamespace:
        w, (bsz, steps) = self.w, input_ids.shape
        types = torch.zeros_like(input_ids) if token_type_ids is None else token_type_ids
        x = (
            w["embeddings.word_embeddings.weight"][input_ids]
            + w["embeddings.token_type_embeddings.weight"][types]
            + w["embeddings.position_embeddings.weight"][:steps][None]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        mask = attention_mask[:, None, None, :].bool()
        for i in range(self.config.num_hidden_layers):
            pre = f"encoder.layer.{i}."
            q, k, v = (
                self._linear(x, pre + f"attention.self.{n}").view(bsz, steps, self.heads, -1).transpose(1, 2)
                for n in ("query", "key", "value")
            )
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0 / math.sqrt(q.shape[-1]))
            att = att.transpose(1, 2).reshape(bsz, steps, -1)
            x = self._norm(x + self._linear(att, pre + "attention.output.dense"), pre + "attention.output.LayerNorm")
            h = F.gelu(self._linear(x, pre + "intermediate.dense"))
            x = self._norm(x + self._linear(h, pre + "output.dense"), pre + "output.LayerNorm")
        return SimpleNamespace(last_hidden_state=x)
