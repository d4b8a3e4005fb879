"""Prompt file readers: each shape, the shared CivitAI files, malformed lines, strictness, empty files."""

import json
import logging

import pytest

from flowrl.data.prompt_sources import PromptSourceError, read_prompt_file
from tests.conftest import shared_path


def test_jsonl_prompt_text_and_negative(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(
        json.dumps({"prompt": "a fox in snow", "negative_prompt": "blurry", "source": "mine"})
        + "\n\n"
        + json.dumps({"text": "a castle at dawn"})
        + "\n"
    )
    rows = read_prompt_file(path).rows
    assert rows == [
        {"prompt": "a fox in snow", "negative_prompt": "blurry", "source": "mine"},
        {"prompt": "a castle at dawn", "negative_prompt": None, "source": "p.jsonl:3"},
    ]


def test_csv_with_header(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text('id,Prompt,negative_prompt\n1,"a fox, in snow",blurry\n2,"multi\nline prompt",\n')
    rows = read_prompt_file(path).rows
    assert [r["prompt"] for r in rows] == ["a fox, in snow", "multi\nline prompt"]
    assert [r["negative_prompt"] for r in rows] == ["blurry", None]


def test_csv_without_prompt_column(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("id,caption\n1,a fox\n")
    with pytest.raises(PromptSourceError, match="no 'prompt' or 'text' column"):
        read_prompt_file(path)


def test_plain_text_one_per_line(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a fox in snow\n\n  a castle at dawn  \n")
    rows = read_prompt_file(path).rows
    assert [(r["prompt"], r["source"]) for r in rows] == [("a fox in snow", "p.txt:1"), ("a castle at dawn", "p.txt:3")]


def _malformed_jsonl(tmp_path):
    path = tmp_path / "bad.jsonl"
    lines = [
        json.dumps({"prompt": "good one"}).encode(),
        b"{not json",
        json.dumps({"caption": "no prompt field"}).encode(),
        json.dumps({"prompt": 42}).encode(),
        b'{"prompt": "bad bytes \xff\xfe"}',
        json.dumps({"prompt": "good two", "negative_prompt": ["x"]}).encode(),
        json.dumps(["a", "list"]).encode(),
        json.dumps({"prompt": "good three"}).encode(),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_malformed_lines_skipped_with_numbers(tmp_path, caplog):
    path = _malformed_jsonl(tmp_path)
    with caplog.at_level(logging.WARNING):
        result = read_prompt_file(path, strict=False)
    assert [r["prompt"] for r in result.rows] == ["good one", "good three"]
    assert [n for n, _ in result.malformed] == [2, 3, 4, 5, 6, 7]
    reasons = dict(result.malformed)
    assert "not valid JSON" in reasons[2] and "no 'prompt'" in reasons[3] and "int" in reasons[4]
    assert "UTF-8" in reasons[5] and "negative_prompt" in reasons[6]
    assert "bad.jsonl" in caplog.text and "6 malformed" in caplog.text


def test_malformed_line_fatal_when_strict(tmp_path):
    path = _malformed_jsonl(tmp_path)
    with pytest.raises(PromptSourceError, match=r"bad\.jsonl:2: not valid JSON.*prompts\.strict: false"):
        read_prompt_file(path, strict=True)


def test_csv_malformed_rows_keep_line_numbers(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"prompt,negative_prompt\ngood one,\n\xff\xfe broken,\ntoo,many,cells\ngood two,x\n")
    result = read_prompt_file(path)
    assert [r["prompt"] for r in result.rows] == ["good one", "good two"]
    assert [n for n, _ in result.malformed] == [3, 4]


@pytest.mark.parametrize("content", [b"", b"\n\n", b"{bad\n"])
def test_empty_source_is_an_error(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    with pytest.raises(PromptSourceError, match="no prompts found"):
        read_prompt_file(path)


def test_missing_and_unknown_kind(tmp_path):
    with pytest.raises(PromptSourceError, match="not found"):
        read_prompt_file(tmp_path / "nope.jsonl")
    (tmp_path / "p.parquet").write_text("x")
    with pytest.raises(PromptSourceError, match="unknown prompt file kind"):
        read_prompt_file(tmp_path / "p.parquet")


@pytest.mark.parametrize("name, n_rows", [("prompts.jsonl", 10000), ("generations.jsonl", 20000)])
def test_shared_civitai_files(name, n_rows):
    path = shared_path("data", "civitai", name)
    result = read_prompt_file(path, strict=True)
    assert len(result.rows) == n_rows and not result.malformed
    assert all(isinstance(r["prompt"], str) and r["prompt"] for r in result.rows)
    assert sum(r["negative_prompt"] is not None for r in result.rows) > n_rows // 2
