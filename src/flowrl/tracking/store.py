"""Where the MLflow store is, and a registered model's files read from a local store without importing MLflow.

`flowrl generate` loads the registry's champion on every call; importing MLflow and copying the model out of
the store takes 2-3 s of a 5 s budget. For the embedded store (SQLite + file artifacts, the default) the alias
is resolved with `sqlite3` and the model's artifact folder is read in place. Anything else (a tracking server,
remote artifacts, a store schema this code does not know) returns None, and the caller takes MLflow's path.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlparse

import yaml

DEFAULT_STORE = "mlflow"  # relative to the repository root: mlflow.db + artifacts/
_MODEL_URI = re.compile(r"^models:/([^/@]+)(?:@([^/]+)|/(\d+))$")


def tracking_uri(root: Path) -> str:
    """MLFLOW_TRACKING_URI if set (a server, or any store), else the embedded SQLite store under mlflow/."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(root / DEFAULT_STORE / 'mlflow.db').resolve()}"


def local_model_artifacts(model: str, uri: str) -> dict[str, Path] | None:
    """The artifacts (name -> path, as MLflow passes them to the model) of `models:/NAME@ALIAS` or
    `models:/NAME/VERSION` in the SQLite store `uri` with file artifacts; None when that does not hold or the
    model is not found there."""
    m = _MODEL_URI.match(model)
    if m is None or not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    if not db.is_file():
        return None
    name, alias, version = m.groups()
    try:
        with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as con:
            if alias is not None:
                row = con.execute(
                    "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?", (name, alias)
                ).fetchone()
                if row is None:
                    return None
                version = row[0]
            row = con.execute(
                "SELECT storage_location FROM model_versions WHERE name = ? AND version = ? AND status = 'READY'",
                (name, int(version)),
            ).fetchone()
    except sqlite3.Error:  # another MLflow schema, a locked or damaged file: MLflow's own path says what is wrong
        return None
    location = urlparse(row[0]) if row and row[0] else None
    if location is None or location.scheme != "file":
        return None
    folder = Path(unquote(location.path))
    try:
        meta = yaml.safe_load((folder / "MLmodel").read_text(encoding="utf-8"))
        logged = meta["flavors"]["python_function"]["artifacts"]
        artifacts = {key: folder / entry["path"] for key, entry in logged.items()}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        return None
    return artifacts if all(p.exists() for p in artifacts.values()) else None
