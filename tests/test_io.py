import pytest

from flowrl.errors import FlowRLError
from flowrl.io import read_json, read_jsonl, write_json, write_jsonl


def test_interrupted_write_leaves_old_file(tmp_path):
    path = tmp_path / "rows.jsonl"
    write_jsonl(path, [{"a": 1}])

    def rows():
        yield {"a": 2}
        raise RuntimeError("killed mid-way")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    assert read_jsonl(path) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]


def test_bad_line_named(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n{oops\n')
    with pytest.raises(FlowRLError, match=r"x.jsonl:2"):
        read_jsonl(path)


def test_json_roundtrip_unicode(tmp_path):
    write_json(tmp_path / "m.json", {"prompt": "café ☕"})
    assert read_json(tmp_path / "m.json") == {"prompt": "café ☕"}


def test_written_files_get_the_usual_mode(tmp_path):
    import os
    import stat

    umask = os.umask(0o022)
    try:
        path = write_json(tmp_path / "m.json", {})
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
