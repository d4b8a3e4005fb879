"""Constrained decoding: a logits processor that only lets the policy write flows that decode and validate.

`FlowConstraint` keeps, per batch row, an incremental parse state of the generated flow text (the
line-per-node encoding of `flowrl.encoding.codec`) and sets to -inf every token whose text would
make the flow impossible to complete into text that `decode_flow` and `validate_graph` accept.
Allowed-token sets are computed per parse-state kind and cached as boolean tensors; string-level
checks only run on small candidate sets (literal prefixes, number tokens). See docs/policy.md,
"Constrained decoding".
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import torch

from flowrl.comfy.catalog import Catalog, InputSpec
from flowrl.comfy.usable import ADVANCED
from flowrl.comfy.validate import types_compatible
from flowrl.encoding.grammar import (
    STR_CLOSED,
    STR_IN,
    ConstraintError,
    file_group,
    json_string_step,
    link_target,
    num_complete,
    num_target,
)
from flowrl.encoding.schema import Schema
from flowrl.policy.decoding.budget import FlowBudget
from flowrl.policy.decoding.flow_parse import (
    FED_ONCE,
    SHARED_TYPES,
    FlowParse,
    RowState,
    _parsed,
    capped_spec,
    is_loader,
)
from flowrl.policy.decoding.rules import TrainingFlowRules
from flowrl.policy.decoding.token_grammar import FlowGrammar

FINISH_SLACK = 4  # spare tokens kept when deciding to steer towards the end (cost estimates are approximate)


class FlowConstraint(FlowParse, FlowBudget, TrainingFlowRules):
    """HF logits processor masking every token that would make the flow undecodable or invalid.

    Args:
        tokenizer: the policy's tokenizer, with the flow tokens added.
        schema: the encode stage's schema (class types and value vocabularies); None = the class
            types the tokenizer has flow tokens for, free strings for file-name fields.
        catalog: node catalog (default: the shipped one).
        prompt_length: where generated tokens start, one width for the (left-padded) batch or one
            per row; None = the sequence length at the first call of each generation.
        max_new_tokens: the sampling budget; when set, the constraint steers towards a complete
            flow once the remaining tokens approach the cost of finishing (see docs/policy.md).
        grammar: a prebuilt FlowGrammar to share between processors of one tokenizer.
    """

    def __init__(
        self,
        tokenizer,
        schema: Schema | None = None,
        catalog: Catalog | None = None,
        prompt_length: int | Sequence[int] | None = None,
        max_new_tokens: int | None = None,
        grammar: FlowGrammar | None = None,
    ):
        self.g = grammar or FlowGrammar(tokenizer, schema, catalog)
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        self.rows: list[RowState] = []
        self._starts: list[int] = []
        self._last: torch.Tensor | None = None
        self._all = torch.ones(self.g.vocab_size, dtype=torch.bool)
        self._hopeless = False
        self.n_dead_ends = 0  # rows where nothing was allowed (should stay 0; EOS is forced then)
        self.forced: list[
            torch.Tensor
        ] = []  # per step of the current generation: (B,) True where one token was allowed
        self.allowed_steps: list[torch.Tensor] = []  # per step: (B, V) the tokens allowed (GRPO renormalises over them)

    # ------------------------------------------------------------ structure choices

    def _links_ok(self, types: frozenset[str], spec: InputSpec) -> bool:
        return self.g.provides(types, spec.type)

    def _fresh(self, row: RowState, ct: str) -> bool:
        """Whether a `ct` line can take a latent or image that no `ct` line has taken through the same input."""
        rule = self.g.classes[ct]
        for n in rule.required:
            spec = rule.spec.inputs[n]
            if spec.kind == "link" and spec.type in FED_ONCE:
                targets = {
                    k for k, outs in enumerate(row.lines, 1) if any(types_compatible(spec.type, t) for t in outs)
                }
                if targets and not targets - {k for c, m, k in row.fed if c == ct and m == n}:
                    return False
        return True

    def _struct_forms(
        self, row: RowState, budget: float, finish: bool, capped: bool = True
    ) -> tuple[dict[str, tuple], bool]:
        """Structural choices at a line start or item end: written form -> action, and whether EOS is allowed.

        `capped=False` (parsing what was sampled) leaves out the loader rules and the counts of training flows, which
        finishing may exceed to complete a flow.
        """
        forms: dict[str, tuple] = {}
        if row.cls is None:
            types = row.types()
            complete = row.has_output and row.has_sampler
            if finish:
                # a pass left with leftover noise is continued first (decoded, it would be noise)
                handover = self._handover_cost(row, None) and self._cost(row) <= budget
                ct = ADVANCED if handover else self.g.finish_class(types, row.has_output, row.has_sampler)
                if ct is None and complete and row.open and self._orphan_cost(row) <= budget:
                    ct = self._orphan_step(row)
                if ct is not None:
                    forms[self.g.classes[ct].form] = ("class", ct)
                return forms, complete and (not row.open or not forms)
            for ct, rule in self.g.classes.items():
                if not all(
                    self._links_ok(types, rule.spec.inputs[n])
                    for n in rule.required
                    if rule.spec.inputs[n].kind == "link"
                ):
                    continue
                if not self._fresh(row, ct) or (capped and self._capped(row, ct)):
                    continue
                after = (
                    sum(self.g.input_cost(rule, n) for n in rule.required)
                    + 1
                    + self.g.finish_cost(
                        row.types(rule),
                        row.has_output or rule.spec.is_output_node,
                        row.has_sampler or self.g.is_sampler(ct),
                    )
                    + 1
                )
                after += self._orphan_cost(row, rule) + self._handover_cost(row, ct)
                if self.g.tok_len(rule.form) + after + FINISH_SLACK <= budget:
                    forms[rule.form] = ("class", ct)
            forms = self._without_dead_ends(row, forms) if capped else forms
            # EOS only once every node feeds something (an orphan node is a flow nobody would write),
            # unless the budget leaves no other line to write
            return forms, complete and (not row.open or not forms)
        rule = self.g.classes[row.cls]
        missing = self._missing(row)
        types = row.types()
        complete_line = not missing
        eos_ok = (
            complete_line
            and (row.has_output or rule.spec.is_output_node)
            and (row.has_sampler or self.g.is_sampler(row.cls))
            and (finish or (not row.open and rule.spec.is_output_node))
        )
        if finish:
            consume = self._consuming_input(row)
            if missing:
                forms[rule.name_forms[missing[0]]] = ("name", missing[0])
            elif consume is not None:
                forms[rule.name_forms[consume]] = ("name", consume)
            elif not eos_ok or 0 < self._orphan_cost(row, rule) <= budget:
                forms["\n"] = ("newline",)
                eos_ok = False
            return forms, eos_ok
        tail = self._tail_cost(row)
        for n, spec in rule.spec.inputs.items():
            if n in row.used or (spec.kind == "link" and not self._links_ok(types, spec)):
                continue
            if spec.kind == "widget" and self.g.value_target(rule, n) is None:
                continue
            extra = 0 if n in missing else self.g.input_cost(rule, n)
            if n in missing or tail + extra + FINISH_SLACK <= budget:
                forms[rule.name_forms[n]] = ("name", n)
        if complete_line:
            forms["\n"] = ("newline",)
        return forms, eos_ok

    # ------------------------------------------------------------ values

    def _consuming_input(self, row: RowState) -> str | None:
        """An unused input of the current line that could take an orphan node (finishing mode writes it)."""
        rule = self.g.classes[row.cls]
        for n, spec in rule.spec.inputs.items():
            if (
                n not in row.used
                and spec.kind == "link"
                and n in rule.name_forms
                and any(types_compatible(spec.type, t) for k in row.open for t in row.lines[k - 1])
            ):
                return n
        return None

    def _link_forms(self, row: RowState, spec: InputSpec, finish: bool = False) -> list[str]:
        forms = [
            (k, f"@{k}" if j == 0 else f"@{k}.{j}")
            for k, outs in enumerate(row.lines, 1)
            for j, t in enumerate(outs)
            if types_compatible(spec.type, t)
        ]
        # the prompt goes into the positive conditioning and never into the negative (a usable flow); a latent
        # or image goes into one input of one class once; finishing prefers orphans. Each rule only narrows
        # when a line of the right kind is left, so none can dead-end.
        avoid = (
            row.text_lines if spec.name == "positive" else row.prompt_lines if spec.name == "negative" else frozenset()
        )
        if spec.type in FED_ONCE:
            avoid = avoid | {k for c, n, k in row.fed if c == row.cls and n == spec.name}
        if spec.type == "LATENT":
            # leftover noise goes only into a KSamplerAdvanced pass that continues it (comfy.usable.handover_problems)
            avoid = avoid | (
                {k for k, _ in forms if not self._handover_fits(row, self._first_pass(row, k))}
                if row.cls == ADVANCED
                else {k for k, _ in row.leftover}
            )
            denoise = dict(row.vals).get("denoise")
            if row.cls == "KSampler" and denoise is not None and _parsed(denoise) != 1:
                avoid = avoid | row.empty_latents  # a partial denoise is a hires pass, on an upscaled latent
        if row.line_refiner is not None and spec.type in ("MODEL", "CONDITIONING"):
            # the SDXL refiner's model with the refiner's text encoders, a base model with the base's (usable.refiner_problems)
            mismatched = {
                k
                for k, _ in forms
                if (k in (row.refiner_models if spec.type == "MODEL" else row.refiner_conds)) != row.line_refiner
            }
            avoid = avoid | mismatched
        kept = [(k, w) for k, w in forms if k not in avoid] or forms
        if finish or spec.type not in SHARED_TYPES:
            # a line that feeds nothing yet comes first (left unused, it would be an orphan), among the links the
            # value written so far can still become (finishing may start mid-value)
            kept = [(k, w) for k, w in kept if k in row.open and w.startswith(row.value)] or kept
        return [w for _, w in kept]

    def _value_parts(self, row: RowState, finish: bool) -> tuple[list[tuple], bool]:
        """Mask parts (see FlowGrammar.mask_for) continuing the current value, and whether it is already complete."""
        rule = self.g.classes[row.cls]
        spec = rule.spec.inputs[row.name]
        g = self.g
        forms = self._link_forms(row, spec, finish) if spec.kind == "link" else self._widget_forms(row, rule, row.name)
        if forms is not None and is_loader(rule.spec) and row.name.endswith("_name"):
            forms = self._file_forms(row, row.cls, row.name) or forms
        if forms is not None and spec.kind != "link" and row.group is not None:
            # checkpoints and LoRAs of one architecture: an SD1.5 LoRA does nothing on an SDXL model
            forms = [w for w in forms if file_group(row.name, w) in (None, row.group)] or forms
        spec = capped_spec(spec, row, self.pass_vals(row))
        if forms is None and spec.type in ("INT", "FLOAT"):
            complete = num_complete(row.value, spec)
            if finish and not row.value:
                return [("ids", tuple(g.greedy_next(num_target(spec))))], False
            if finish and complete:
                return [], True
            return [("num", spec.type, spec.min, spec.max, row.value)], complete
        if forms is None and (row.value.startswith('"') or not row.value):  # free string: JSON, or a bare vocab value
            if not row.value:
                if finish:
                    return [("ids", tuple(g.greedy_next(g.value_target(rule, row.name))))], False
                bare = tuple(w for w in rule.vocab.get(row.name, []) if not w.startswith('"'))
                return [("json_open",), ("form", bare, "")], False
            state = json_string_step(STR_IN, row.value[1:])
            if state == STR_CLOSED:
                return [], True
            return [("json_close" if finish else "json_in", state)], False
        if forms is None:  # inside a bare vocabulary value of a free-string field
            forms = [w for w in rule.vocab.get(row.name, []) if not w.startswith('"')]
        complete = row.value in forms
        if finish:
            matching = [w for w in forms if w.startswith(row.value) and w != row.value]
            if complete or not matching:
                return [], complete
            target = min(matching, key=lambda w: (g.tok_len(w[len(row.value) :]), w))
            return [("ids", tuple(g.greedy_next(target[len(row.value) :])))], False
        return [("form", tuple(sorted(forms)), row.value)], complete

    # ------------------------------------------------------------ masks and transitions

    def allowed_key(self, row: RowState, budget: float) -> tuple:
        """The mask parts of the tokens this row may produce next (a hashable key for FlowGrammar.mask_for)."""
        finish = budget <= self._cost(row) + FINISH_SLACK
        parts: list[tuple] = []
        if row.cls is not None and row.name is not None:
            parts, complete = self._value_parts(row, finish)
            if not complete:
                return tuple(parts)
            # the state once this value ends (what the structure choices after it see)
            end = replace(
                row,
                used=row.used | {row.name},
                open=row.open - {link_target(row.value)},
                name=None,
                value="",
                prefix="",
                line_text="",
            )
        else:
            end = row
        forms, eos_ok = self._struct_forms(end, budget, finish)
        if finish and end.prefix:
            matching = [w for w in forms if w.startswith(end.prefix)] or [
                w for w in self._struct_forms(end, math.inf, False)[0] if w.startswith(end.prefix)
            ]
            if matching:
                parts.append(("ids", tuple(self.g.greedy_next(matching[0][len(end.prefix) :]))))
        elif finish:
            parts.extend(("ids", tuple(self.g.greedy_next(w))) for w in sorted(forms))
        else:
            parts.append(("form", tuple(sorted(forms)), end.prefix))
        if eos_ok and not end.prefix:
            parts.append(("ids", (self.g.eos,)))
        return tuple(parts)

    def allowed(self, row: RowState, budget: float) -> torch.Tensor:
        """Boolean (V,) mask of the tokens this row may produce next."""
        return self.g.mask_for(self.allowed_key(row, budget))[0]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        last = self._last
        same = (
            last is not None
            and input_ids.shape[0] == last.shape[0]
            and input_ids.shape[1] == last.shape[1] + 1
            and torch.equal(input_ids[:, :-1], last)
        )
        if same:
            for r, row in enumerate(self.rows):
                if input_ids.shape[1] - 1 >= self._starts[r]:
                    self._advance(row, int(input_ids[r, -1]))
        else:
            self._reset(input_ids)
        self._last = input_ids
        masks, any_active = [], False
        for r, row in enumerate(self.rows):
            generated = input_ids.shape[1] - self._starts[r]
            if generated < 0 or row.done:  # still inside its prompt, or finished: left alone
                masks.append(self._all)
                continue
            budget = math.inf if self.max_new_tokens is None or self._hopeless else self.max_new_tokens - generated
            mask, nonempty = self.g.mask_for(self.allowed_key(row, budget))
            if not nonempty:
                self.n_dead_ends += 1
                mask = self.g.mask_for((("ids", (self.g.eos,)),))[0]
            masks.append(mask)
            any_active = True
        if not any_active:
            return scores
        allowed = torch.stack(masks)
        self.forced.append(allowed.sum(1) == 1)
        self.allowed_steps.append(allowed)
        if allowed.shape[1] != scores.shape[1]:  # the model's vocabulary is padded beyond the tokenizer's
            allowed = torch.cat(
                [allowed, torch.zeros(allowed.shape[0], scores.shape[1] - allowed.shape[1], dtype=torch.bool)], 1
            )
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))


SCHEMA_FILE = "flow_schema.json"  # the encode stage's schema, saved by the sft stage beside the policy's tokenizer


def tokenizer_schema(tokenizer) -> Path | None:
    """The schema file saved with a trained policy's tokenizer (`models/sft/flow_schema.json`), if any."""
    path = Path(getattr(tokenizer, "name_or_path", "") or ".") / SCHEMA_FILE
    return path if path.is_file() else None


@functools.lru_cache(maxsize=4)
def _cached_grammar(tokenizer, n_tokens: int, schema_file: Path | None) -> FlowGrammar:
    return FlowGrammar(tokenizer, Schema.load(schema_file) if schema_file else None)


def constraint_processors(
    policy_cfg, tokenizer, max_new_tokens: int | None = None, schema: Schema | None = None
) -> list[FlowConstraint]:
    """`[FlowConstraint(...)]` when `policy_cfg.constrained` is on, else `[]` (the one-line hook for sampling call sites).

    The grammar's value vocabularies are per field when a schema is given or saved with the tokenizer
    (`tokenizer_schema`); otherwise every flow value token stands in for every file-name field. Built
    grammars are cached per tokenizer (building one decodes the whole vocabulary, ~1 s).
    """
    if not getattr(policy_cfg, "constrained", False) or tokenizer is None:  # None: test fakes that sample no tokens
        return []
    try:
        grammar = (
            FlowGrammar(tokenizer, schema)
            if schema is not None
            else _cached_grammar(tokenizer, len(tokenizer), tokenizer_schema(tokenizer))
        )
    except ConstraintError as exc:  # a tokenizer without the flow vocabulary (not a policy of this pipeline)
        warnings.warn(f"constrained decoding is off for this tokenizer: {exc}", stacklevel=2)
        return []
    return [
        FlowConstraint(tokenizer, schema, max_new_tokens=max_new_tokens or policy_cfg.max_new_tokens, grammar=grammar)
    ]
