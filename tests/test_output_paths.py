"""`-o` / `--root` like a careful Unix tool (`flowrl.io`): one clear error or the right result, never a traceback;
atomic, an existing file's mode kept, a symlink followed, a special file never replaced, `-o -` prints."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest
from typer.testing import CliRunner

from flowrl.cli.main import app
from flowrl.errors import FlowRLError
from flowrl.io import write_text
from tests.comfy.test_validate import T2I

runner = CliRunner()


@pytest.fixture
def flow(tmp_path):
    path = tmp_path / "flow.json"
    path.write_text(json.dumps(T2I))
    return path


def to_ui(flow, out) -> object:
    return runner.invoke(app, ["flow", "to-ui", str(flow), "-o", str(out)])


def refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    for word in words:
        assert word in result.stderr, result.stderr


def test_dash_prints_to_stdout(flow, tmp_path):
    result = to_ui(flow, "-")
    assert result.exit_code == 0 and json.loads(result.stdout)["nodes"]
    assert not (tmp_path / "-").exists()


def test_a_directory_a_path_under_a_file_and_a_missing_folder_are_refused(flow, tmp_path):
    refused(to_ui(flow, tmp_path), "is a directory", "give a file path")
    refused(to_ui(flow, flow / "out.json"), "a folder on that path is a file")
    refused(to_ui(flow, tmp_path / "nope" / "out.json"), "does not exist", "mkdir -p")
    assert not (tmp_path / "nope").exists()
    refused(runner.invoke(app, ["pipeline", "dvc-yaml", "--root", str(flow)]), "a folder on that path is a file")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_an_unwritable_folder_is_refused(flow):
    refused(to_ui(flow, "/proc/self/out.json"), "cannot write in", "choose a folder you can write to")


def test_an_existing_file_keeps_its_mode_and_nothing_is_left_beside_it(flow, tmp_path):
    for mode in (0o600, 0o755):
        out = tmp_path / f"out{mode:o}.json"
        out.write_text("old")
        out.chmod(mode)
        assert to_ui(flow, out).exit_code == 0
        assert stat.S_IMODE(out.stat().st_mode) == mode and json.loads(out.read_text())["nodes"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_symlink_is_followed_to_its_target(flow, tmp_path):
    target = tmp_path / "real.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    assert to_ui(flow, link).exit_code == 0
    assert link.is_symlink() and json.loads(target.read_text())["nodes"]
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "new.json")
    assert to_ui(flow, dangling).exit_code == 0 and dangling.is_symlink() and (tmp_path / "new.json").is_file()


def test_a_fifo_without_reader_is_refused_at_once_and_kept(flow, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    refused(to_ui(flow, fifo), "FIFO that no process is reading")
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_fifo_with_a_reader_gets_the_workflow(flow, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        assert to_ui(flow, fifo).exit_code == 0
        data = b""
        while chunk := os.read(reader, 1 << 16):
            data += chunk
    finally:
        os.close(reader)
    assert json.loads(data)["nodes"] and stat.S_ISFIFO(fifo.stat().st_mode)


def test_a_character_device_is_written_into_not_replaced(flow):
    assert to_ui(flow, "/dev/null").exit_code == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_socket_is_never_replaced(tmp_path):
    import socket

    path = tmp_path / "s"
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(path))
        with pytest.raises(FlowRLError, match="is a socket"):
            write_text(path, "x")
        assert stat.S_ISSOCK(path.stat().st_mode)
    finally:
        sock.close()
