"""A saved fast tokenizer (tokenizer.json) read with the `tokenizers` library alone, for the inference paths that
must start fast (`flowrl generate`: importing transformers' tokenizer classes and resolving the folder's config
costs ~2 s of its 5 s on the 2-core box).

`PlainTokenizer` offers the part of transformers' tokenizer interface that sampling, constrained decoding and the
prompt encoder use, with the same results (tests/runtime/test_plain_tokenizer.py compares them with
`AutoTokenizer` on the policy's and MiniLM's tokenizers).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

import torch

FILE, CONFIG, SPECIAL_MAP = "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"
SPECIAL_KEYS = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


class Encoding(dict):
    """A tokenized batch: a dict of tensors (or lists) that also reads as attributes (`enc.input_ids`)."""

    def __getattr__(self, name: str):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


def plain_tokenizer_problem(folder: str | Path) -> str | None:
    """Why `PlainTokenizer` cannot read the tokenizer in `folder`, or None when it can."""
    folder = Path(folder)
    if not (folder / FILE).exists():
        return f"{folder} has no {FILE}"
    cfg = _config(folder)
    if cfg.get("add_bos_token") or cfg.get("add_eos_token"):
        return "the tokenizer adds BOS/EOS outside its post-processor"
    return None


def _config(folder: Path) -> dict:
    cfg = json.loads((folder / CONFIG).read_text()) if (folder / CONFIG).exists() else {}
    if (folder / SPECIAL_MAP).exists():
        for key, value in json.loads((folder / SPECIAL_MAP).read_text()).items():
            cfg.setdefault(key, value)
    return cfg


class PlainTokenizer:
    """transformers-style calls (`tok(texts, ...)`, `decode`, `batch_decode`, special ids) over `tokenizers.Tokenizer`."""

    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        folder = Path(folder)
        self.name_or_path = str(folder)
        self._tok = Tokenizer.from_file(str(folder / FILE))
        self._lock = threading.Lock()
        cfg = _config(folder)
        self.model_input_names = cfg.get("model_input_names") or (
            ["input_ids", "token_type_ids", "attention_mask"]
            if "BertTokenizer" in str(cfg.get("tokenizer_class"))
            else ["input_ids", "attention_mask"]
        )
        self.padding_side = cfg.get("padding_side", "right")
        self.model_max_length = cfg.get("model_max_length")
        self.clean_up_tokenization_spaces = bool(cfg.get("clean_up_tokenization_spaces", False))
        specials = {key: _content(cfg.get(key)) for key in SPECIAL_KEYS}
        self.special_tokens = {k: v for k, v in specials.items() if v is not None}
        self.pad_token = self.special_tokens.get("pad_token")
        for key in SPECIAL_KEYS:
            token = self.special_tokens.get(key)
            setattr(self, key + "_id", self._tok.token_to_id(token) if token is not None else None)
        extra = [_content(t) for t in cfg.get("additional_special_tokens") or cfg.get("extra_special_tokens") or []]
        names = [*self.special_tokens.values(), *extra]
        self.all_special_ids = [i for i in dict.fromkeys(self._tok.token_to_id(t) for t in names) if i is not None]

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    @property
    def added_tokens_decoder(self) -> dict:
        return self._tok.get_added_tokens_decoder()

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def convert_tokens_to_ids(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def __call__(
        self,
        text: str | Sequence[str],
        add_special_tokens: bool = True,
        padding: bool = False,
        padding_side: str | None = None,
        truncation: bool = False,
        max_length: int | None = None,
        return_tensors: str | None = None,
    ) -> Encoding:
        """Token ids (and masks) of one text or a batch, padded to the longest with `padding`."""
        single = isinstance(text, str)
        with self._lock:  # padding and truncation are settings of the shared Rust tokenizer
            tok = self._tok
            if truncation and max_length is not None:
                tok.enable_truncation(max_length)
            else:
                tok.no_truncation()
            if padding:
                side = padding_side or self.padding_side
                tok.enable_padding(direction=side, pad_id=self.pad_token_id or 0, pad_token=self.pad_token or "[PAD]")
            else:
                tok.no_padding()
            encs = tok.encode_batch([text] if single else list(text), add_special_tokens=add_special_tokens)
        out = {
            "input_ids": [e.ids for e in encs],
            "token_type_ids": [e.type_ids for e in encs],
            "attention_mask": [e.attention_mask for e in encs],
        }
        out = {k: v for k, v in out.items() if k in self.model_input_names}
        if return_tensors == "pt":
            out = {k: torch.tensor(v, dtype=torch.long) for k, v in out.items()}
        elif single:
            out = {k: v[0] for k, v in out.items()}
        return Encoding(out)

    def decode(self, ids, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        text = self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)
        clean = (
            self.clean_up_tokenization_spaces if clean_up_tokenization_spaces is None else clean_up_tokenization_spaces
        )
        return _clean_up(text) if clean else text

    def batch_decode(self, rows, skip_special_tokens: bool = False, clean_up_tokenization_spaces: bool | None = None):
        return [self.decode(r, skip_special_tokens, clean_up_tokenization_spaces) for r in rows]


def _content(token) -> str | None:
    return token.get("content") if isinstance(token, dict) else token


def _clean_up(text: str) -> str:
    """transformers' `clean_up_tokenization` (spaces before punctuation and in English contractions)."""
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m")):
        text = text.replace(a, b)
    for a, b in ((" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text
