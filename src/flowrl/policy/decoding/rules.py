"""Rules every training flow keeps that constrained decoding adds to the grammar: no class more often than in any
training flow (the schema's `max_per_graph`), no node that no class could still consume within those counts, one
loader line per file, of two checkpoints one the SDXL refiner, and the refiner's text encoder only once the refiner is
loaded.

A model that cannot find its favourite checkpoint on a user's ComfyUI otherwise writes loader after loader.
`TrainingFlowRules` is a mixin of `FlowConstraint` (flowrl.policy.decoding.constrained): it reads the grammar
(`self.g`); `_struct_forms` asks `_capped` for each class, and `_value_parts` narrows file values by `_file_forms`.
"""

from __future__ import annotations

import math
from collections import Counter

from flowrl.comfy.usable import REFINER_ENCODERS, is_refiner_checkpoint
from flowrl.policy.decoding.flow_parse import RowState, is_loader

CHECKPOINT = "CheckpointLoaderSimple"


class TrainingFlowRules:
    """Class counts and loader rules of the training flows (see the module docstring)."""

    def _capped(self, row: RowState, ct: str) -> bool:
        """Whether a new `ct` line would repeat the class more often than any training flow, or has no file left to load."""
        if row.classes.count(ct) >= self.g.max_per_flow.get(ct, math.inf):
            return True
        if ct in REFINER_ENCODERS and not row.refiner_models:
            return True  # the refiner's text encoder only after the refiner is loaded (its conditioning fits no other model)
        rule = self.g.classes[ct]
        return is_loader(rule.spec) and any(
            self._file_forms(row, ct, n) == [] for n in rule.required if n.endswith("_name")
        )

    def _without_dead_ends(self, row: RowState, forms: dict[str, tuple]) -> dict[str, tuple]:
        """The line starts among `forms` whose class could still feed an output node, or all of `forms` when none
        could (narrowing only while a choice is left, this rule never dead-ends a flow).

        A new line is a dead end when no chain of classes below their training-flow counts leads from its outputs to an
        output node: a CLIPSetLastLayer once both CLIPTextEncode lines are written, a second latent branch once the
        VAEDecode and SaveImage lines are. A training flow never is one: the chain that consumes a node comes later in
        the same flow, so each class on it is below its count when the node is written."""
        counts = Counter(row.classes)
        cap = lambda c: self.g.max_per_flow.get(c, math.inf)  # noqa: E731
        full = frozenset(c for c, n in counts.items() if n >= cap(c))

        def dead_end(ct: str) -> bool:
            spec = self.g.classes[ct].spec
            blocked = full | {ct} if counts[ct] + 1 >= cap(ct) else full
            return not spec.is_output_node and not self.g.reaches_output(tuple(spec.outputs), blocked)

        kept = {w: a for w, a in forms.items() if a[0] != "class" or not dead_end(a[1])}
        return kept or forms

    def _file_forms(self, row: RowState, ct: str, name: str) -> list[str] | None:
        """The files a new `ct` loader line may load through `name` (None: an open field).

        Rules every training flow keeps: no two loader lines load the same file, and of two checkpoints one is the SDXL
        refiner (a user without a refiner gets one-pass flows, not a refining pass on another model).
        """
        forms = self.g.value_forms(self.g.classes[ct], name)
        if forms is None:
            return None
        forms = [w for w in forms if (ct, name, w) not in row.loaded]
        loaded = [w for c, n, w in row.loaded if (c, n) == (CHECKPOINT, "ckpt_name")]
        if ct == CHECKPOINT and name == "ckpt_name" and loaded:
            forms = [
                w for w in forms if is_refiner_checkpoint(w.strip('"')) != is_refiner_checkpoint(loaded[0].strip('"'))
            ]
        return forms
