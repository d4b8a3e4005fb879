"""PlainTokenizer (flowrl.runtime.plain_tokenizer) answers as transformers' AutoTokenizer does on the tokenizers the
inference path reads: a trained policy's BPE with its flow tokens, and MiniLM's WordPiece."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from flowrl.policy import sft
from flowrl.policy.template import format_prompt
from flowrl.reward.encoder import minilm_path
from flowrl.runtime.plain_tokenizer import PlainTokenizer, plain_tokenizer_problem
from tests.policy.test_cpu_default_path import scratch  # noqa: F401 - a fixture
from tests.policy.test_sft import flows  # noqa: F401 - a fixture used by `scratch`

TEXTS = [
    "a castle at dawn, dramatic clouds",
    "Portrait of a GIRL, 85mm!! <lora:x:0.5> ünïcode 日本",
    "x " * 300,
    "KSampler steps=20 cfg=7.0",
]
CALLS = [
    {"return_tensors": "pt", "padding": True, "padding_side": "left"},
    {"truncation": True, "max_length": 16, "padding": True, "return_tensors": "pt"},
    {"add_special_tokens": False},
    {},
]


def assert_same(folder) -> None:
    hf, plain = AutoTokenizer.from_pretrained(str(folder), local_files_only=True), PlainTokenizer(folder)
    assert plain_tokenizer_problem(folder) is None
    assert len(plain) == len(hf) and plain.all_special_ids == hf.all_special_ids
    assert (plain.eos_token_id, plain.pad_token_id) == (hf.eos_token_id, hf.pad_token_id)
    for kwargs in CALLS:
        a, b = hf(TEXTS, **kwargs), plain(TEXTS, **kwargs)
        assert sorted(a.keys()) == sorted(b.keys())
        for key in a.keys():
            assert (a[key] == b[key]).all() if kwargs.get("return_tensors") else a[key] == b[key], (kwargs, key)
    assert plain(TEXTS[0], add_special_tokens=False).input_ids == hf(TEXTS[0], add_special_tokens=False).input_ids
    every = [[i] for i in range(len(hf))]
    assert plain.batch_decode(every) == hf.batch_decode(every, clean_up_tokenization_spaces=False)
    ids = hf(TEXTS[1]).input_ids
    for skip in (False, True):
        assert plain.decode(ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False) == hf.decode(
            ids, skip_special_tokens=skip, clean_up_tokenization_spaces=False
        )
    added = lambda tok: {i: (t.content, t.special) for i, t in tok.added_tokens_decoder.items()}  # noqa: E731
    assert added(plain) == added(hf)


def test_a_trained_policy_tokenizer_reads_the_same(scratch):  # noqa: F811
    root, _, _ = scratch
    folder = root / sft.OUT_DIR
    assert_same(folder)
    hf, plain = AutoTokenizer.from_pretrained(str(folder)), PlainTokenizer(folder)
    batch = [format_prompt(t) for t in TEXTS]  # what sampling tokenizes
    a = hf(batch, return_tensors="pt", padding=True, padding_side="left")
    b = plain(batch, return_tensors="pt", padding=True, padding_side="left")
    assert (a.input_ids == b.input_ids).all() and (a.attention_mask == b.attention_mask).all()


def test_minilm_tokenizer_reads_the_same():
    assert_same(minilm_path())


def test_a_folder_without_tokenizer_json_is_refused_with_the_reason(tmp_path):
    assert "has no tokenizer.json" in plain_tokenizer_problem(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    (tmp_path / "tokenizer_config.json").write_text('{"add_bos_token": true}')
    assert "adds BOS/EOS" in plain_tokenizer_problem(tmp_path)
    with pytest.raises(Exception):  # noqa: B017 - the tokenizers library's own error for a broken file
        PlainTokenizer(tmp_path)
