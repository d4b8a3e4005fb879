"""Constrained decoding limited to what a user's ComfyUI has installed (its /object_info)."""

from __future__ import annotations

from flowrl.comfy.object_info import ObjectInfo, ObjectInfoError
from flowrl.encoding.installed import restrict_schema
from flowrl.encoding.schema import Schema
from flowrl.policy.decoding.constrained import SCHEMA_FILE, tokenizer_schema


def installed_schema(tokenizer, info: ObjectInfo) -> tuple[Schema, list[str]]:
    """The policy's flow schema (saved beside its tokenizer) restricted to `info`'s classes and model files.

    Pass the schema to `constraint_processors(..., schema=...)`; the notes say which choices had to change.

    Raises:
        ObjectInfoError: the policy has no saved schema, or nothing it generates can run on that server.
    """
    path = tokenizer_schema(tokenizer)
    if path is None:
        raise ObjectInfoError(
            f"this policy has no {SCHEMA_FILE} beside its tokenizer, so its choices cannot be limited to "
            f"{info.source}; retrain it with the current sft stage (dvc repro sft)"
        )
    return restrict_schema(Schema.load(path), info)
