"""Atomic file writes and JSON Lines helpers: an interrupted stage leaves nothing half-written."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flowrl.errors import FlowRLError


def _kind(mode: int) -> str | None:
    """What a non-regular file is ('a directory', 'a FIFO', ...), or None for a regular file."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return None


def _target(path: Path, make_parents: bool) -> tuple[Path, os.stat_result | None]:
    """The file a write to `path` lands in (a symlink is followed to its target) and its stat, or None when new.

    Raises:
        FlowRLError: the parent is missing (and not to be made), not a directory, or not writable.
    """
    target = Path(os.path.realpath(path))
    try:
        return target, target.stat()
    except FileNotFoundError:
        pass
    except NotADirectoryError:
        raise FlowRLError(f"{path}: a folder on that path is a file; choose another path") from None
    except OSError as exc:
        raise FlowRLError(f"{path}: cannot write ({exc.strerror}); choose another path") from None
    parent = target.parent
    if not parent.exists():
        if not make_parents:
            raise FlowRLError(
                f"{path}: the folder {parent} does not exist; create it first (mkdir -p {parent}) or choose another path"
            )
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FlowRLError(
                f"{path}: cannot create the folder {parent} ({exc.strerror}); choose another path"
            ) from None
    if not parent.is_dir():
        raise FlowRLError(f"{path}: {parent} is not a folder (a file has that name); choose another path")
    return target, None


@contextmanager
def atomic_path(path: str | Path, make_parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`'s target; rename it over the target only if the block succeeds.

    A symlink is followed (its target is replaced, the link stays); an existing file keeps its mode (a new one
    gets 0666 less the umask); a directory or special file (FIFO, device, socket) is never replaced.

    Raises:
        FlowRLError: naming the path, when it cannot be written (missing or unwritable folder, special file).
    """
    path = Path(path)
    target, existing = _target(path, make_parents)
    if existing is not None and (kind := _kind(existing.st_mode)):
        raise FlowRLError(f"{path}: is {kind}, which would not be replaced; give a file path")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise FlowRLError(
            f"{path}: cannot write in {target.parent} ({exc.strerror}); choose a folder you can write to"
        ) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if existing is not None:
            mode = stat.S_IMODE(existing.st_mode)
        else:  # mkstemp creates 0600; give the file the mode a plain open() would have
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        try:
            os.chmod(tmp_path, mode)
            os.replace(tmp_path, target)
        except OSError as exc:
            raise FlowRLError(f"{path}: cannot replace {target} ({exc.strerror}); choose another path") from None
    finally:
        tmp_path.unlink(missing_ok=True)


def _write_special(path: Path, target: Path, kind: str, data: bytes) -> None:
    """Write into a FIFO or character device (as `cat > /dev/null` would), never waiting for a reader."""
    if kind.startswith("a FIFO"):
        try:  # non-blocking open: ENXIO at once when no process reads the pipe (a blocking open would hang)
            fd = os.open(target, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise FlowRLError(
                f"{path}: is a FIFO that no process is reading ({exc.strerror}); start the reader first"
            ) from None
        os.set_blocking(fd, True)
    else:
        try:
            fd = os.open(target, os.O_WRONLY)
        except OSError as exc:
            raise FlowRLError(f"{path}: cannot write to {kind} ({exc.strerror}); give a file path") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise FlowRLError(f"{path}: writing to {kind} failed ({exc.strerror})") from None


def write_text(path: str | Path, text: str, make_parents: bool = True) -> Path:
    """Write `text` (UTF-8) to `path` atomically (`atomic_path`); into a FIFO or character device, write directly."""
    path = Path(path)
    target, existing = _target(path, make_parents)
    kind = _kind(existing.st_mode) if existing is not None else None
    if kind in ("a character device",) or (kind or "").startswith("a FIFO"):
        _write_special(path, target, kind, text.encode("utf-8"))
        return path
    with atomic_path(path, make_parents) as tmp:
        try:
            tmp.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise FlowRLError(
                f"{path}: cannot write ({exc.strerror}); free some space or choose another path"
            ) from None
    return path


def write_json(path: str | Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n")


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Write rows as JSON Lines atomically; return how many were written."""
    n = 0
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FlowRLError(f"{path}: not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FlowRLError(f"{path}: not valid JSON ({exc})") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """Read a JSON Lines file written by this project; a bad line is an error naming its number."""
    path = Path(path)
    if not path.exists():
        raise FlowRLError(f"{path}: not found; run the stage that writes it first (dvc repro)")
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise FlowRLError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
    return rows
