"""A flow schema restricted to what a user's ComfyUI has installed (its `/object_info`, flowrl.comfy.object_info):
the value vocabularies constrained decoding draws from, cut down to the classes and model files on that server."""

from __future__ import annotations

import copy

from flowrl.comfy.catalog import Catalog, load_catalog
from flowrl.comfy.object_info import ObjectInfo, ObjectInfoError
from flowrl.comfy.validate import types_compatible
from flowrl.encoding.schema import Schema

LISTED = 6  # values named in a note before "(+n more)"


def _listed(values: list) -> str:
    shown = ", ".join(map(str, values[:LISTED]))
    return shown + (f" (+{len(values) - LISTED} more)" if len(values) > LISTED else "")


def restrict_schema(schema: Schema, info: ObjectInfo, catalog: Catalog | None = None) -> tuple[Schema, list[str]]:
    """The flow schema cut down to what `info`'s server can run, and one note per choice that had to change.

    Classes the server lacks are dropped; every file-list field's vocabulary becomes the installed files
    (the model's own values first); a class whose required file field has no installed file, or whose
    required link type nothing left can produce, is dropped.

    Raises:
        ObjectInfoError: no checkpoint-to-output path remains (nothing generated could run there).
    """
    catalog = catalog or load_catalog()
    out = copy.deepcopy(schema)
    notes: list[str] = []
    for ct in list(out.classes):
        spec = catalog.get(ct)
        if ct not in info.nodes:
            del out.classes[ct]
            notes.append(f"{ct} is not installed on this ComfyUI (a custom node, or a newer ComfyUI): left out")
            continue
        unusable = False
        for name, stats in out.classes[ct].fields.items():
            ispec = spec.inputs.get(name) if spec else None
            allowed = info.choices(ct, name)
            if ispec is None or ispec.type != "COMBO" or allowed is None:
                continue
            missing = [v for v in stats.vocab if v not in allowed]
            if ispec.choices is not None:  # fixed choices (samplers, ...): the grammar takes them from the catalog
                if missing:
                    notes.append(f"{ct}.{name}: {_listed(missing)} not on this ComfyUI (older version?); not enforced")
                continue
            installed = [v for v in allowed if isinstance(v, str) and v.strip()]
            stats.vocab = dict(sorted(((v, stats.vocab.get(v, 0)) for v in installed), key=lambda kv: (-kv[1], kv[0])))
            stats.vocab_truncated = False
            if not installed and ispec.required:
                unusable = True
                notes.append(f"{ct} left out: no {name} installed (the model knew {_listed(missing)})")
            elif missing:
                notes.append(f"{ct}.{name}: {_listed(missing)} not installed: only {_listed(installed)} allowed")
        if unusable:
            del out.classes[ct]
    _drop_unreachable(out, catalog, notes)
    return out, notes


def _drop_unreachable(schema: Schema, catalog: Catalog, notes: list[str]) -> None:
    """Drop classes needing a link type no remaining class produces; raise when no output node stays reachable."""
    specs = {ct: catalog.get(ct) for ct in schema.classes if catalog.get(ct) is not None}
    produced: set[str] = set()
    reachable: set[str] = set()
    changed = True
    while changed:  # fixpoint: a class is reachable once every required link type is produced
        changed = False
        for ct, spec in specs.items():
            needs = [i.type for i in spec.inputs.values() if i.kind == "link" and i.required]
            if ct not in reachable and all(any(types_compatible(t, p) for p in produced) for t in needs):
                reachable.add(ct)
                produced |= set(spec.outputs)
                changed = True
    for ct in sorted(set(specs) - reachable):
        del schema.classes[ct]
        needs = sorted(
            {
                i.type
                for i in specs[ct].inputs.values()
                if i.kind == "link" and i.required and not any(types_compatible(i.type, p) for p in produced)
            }
        )
        notes.append(f"{ct} left out: needs {', '.join(needs)}, which nothing installed produces")
    if "MODEL" not in produced or not any(specs[ct].is_output_node for ct in reachable):
        raise ObjectInfoError(
            "nothing this model generates can run on that ComfyUI: no installed loader gives a MODEL "
            "with an output node after it (see the notes: "
            + "; ".join(notes[:LISTED])
            + "); install a checkpoint (models/checkpoints) or pass the right --object-info"
        )
