"""What finishing a flow still costs, in tokens: the estimates `FlowConstraint` (flowrl.policy.decoding.constrained)
steers by once the remaining budget approaches them (docs/policy.md, "Constrained decoding").

`FlowBudget` is a mixin of `FlowConstraint`: it reads the grammar (`self.g`) and the parse and value forms
(`_widget_forms` of FlowParse, `_link_forms` of FlowConstraint) of the class it is mixed into.
"""

from __future__ import annotations

from flowrl.comfy.usable import ADVANCED
from flowrl.encoding.grammar import ClassRule, num_complete, num_target
from flowrl.policy.decoding.flow_parse import RowState


class FlowBudget:
    """Token-cost estimates of the rest of a flow from a row's parse state (see the module docstring)."""

    def _missing(self, row: RowState, extra: str | None = None) -> list[str]:
        rule = self.g.classes[row.cls]
        used = row.used | ({extra} if extra else set())
        return [n for n in rule.required if n not in used]

    def _orphan_cost(self, row: RowState, new: ClassRule | None = None) -> float:
        """Tokens of the lines that would consume every orphan node (and `new`, when it is no output node).

        Counted once the flow already has a sampler and an output node: before that, the finishing plan's
        own lines take most open nodes, and counting them twice would shut out flows that fit the budget.
        """
        if not (row.has_sampler and row.has_output):
            return 0
        types = row.types(new)
        outputs = [row.lines[k - 1] for k in sorted(row.open)]
        if new is not None and not new.spec.is_output_node:
            outputs.append(tuple(new.spec.outputs))
        return sum(self.g.consumer(types, o)[0] for o in outputs if o)

    def _handover_cost(self, row: RowState, ct: str | None) -> int:
        """Tokens of the KSamplerAdvanced lines that must continue the passes left with leftover noise (a `ct` line may be one)."""
        n = sum(1 for k, _ in row.leftover if k in row.open) - (ct == ADVANCED)
        return n * self.g.line_cost(ADVANCED) if n > 0 else 0

    def _tail_cost(self, row: RowState, used_extra: str | None = None) -> int:
        """Tokens to finish the current line from an item end, then an output node and EOS."""
        rule = self.g.classes[row.cls]
        cost = sum(self.g.input_cost(rule, n) for n in self._missing(row, used_extra)) + 1
        has_output = row.has_output or rule.spec.is_output_node
        return (
            cost
            + self.g.finish_cost(row.types(rule), has_output, row.has_sampler or self.g.is_sampler(row.cls))
            + 1
            + self._orphan_cost(row, rule)
            + self._handover_cost(row, row.cls)
        )

    def _orphan_step(self, row: RowState) -> str | None:
        """In finishing mode, the class to write next towards consuming the first orphan node; None when none can be."""
        types = row.types()
        leftover = {
            k for k, _ in row.leftover
        }  # only a KSamplerAdvanced continues one (`_struct_forms` writes it when it fits)
        for k in sorted(row.open - leftover):
            _, ct, _ = self.g.consumer(types, row.lines[k - 1])
            if ct is not None:
                return self.g.first_step(types, ct)
        return None

    def _cost(self, row: RowState) -> float:
        """Estimated tokens still needed to reach a complete flow and EOS from this state."""
        if row.cls is None:
            return (
                self.g.finish_cost(row.types(), row.has_output, row.has_sampler)
                + 1
                + (2 if row.prefix else 0)
                + self._orphan_cost(row)
                + self._handover_cost(row, None)
            )
        rule = self.g.classes[row.cls]
        if row.name is None:
            return self._tail_cost(row) + (2 if row.prefix else 0)
        spec = rule.spec.inputs[row.name]
        if spec.kind == "link" or self._widget_forms(row, rule, row.name) is not None:
            forms = self._link_forms(row, spec) if spec.kind == "link" else self._widget_forms(row, rule, row.name)
            value_cost = min((self.g.tok_len(w[len(row.value) :]) for w in forms if w.startswith(row.value)), default=0)
        elif spec.type in ("INT", "FLOAT"):
            value_cost = 0 if num_complete(row.value, spec) else len(num_target(spec)) + 1
        elif row.value.startswith('"') or not row.value:
            value_cost = 1 if row.value else self.g.tok_len(self.g.value_target(rule, row.name))
        else:
            bare = [w for w in rule.vocab.get(row.name, []) if w.startswith(row.value)]
            value_cost = min((self.g.tok_len(w[len(row.value) :]) for w in bare), default=0)
        return value_cost + self._tail_cost(row, row.name)
