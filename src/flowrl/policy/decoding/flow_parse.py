"""Per-row parse state of a flow being sampled, and how each token's text advances it (flowrl.policy.decoding.constrained
builds its logits masks on top).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace

import torch

from flowrl.comfy.catalog import InputSpec
from flowrl.comfy.graph import PROMPT_PLACEHOLDER
from flowrl.comfy.usable import (
    ADVANCED,
    CONTINUED,
    EMPTY_LATENT,
    REFINER_ENCODERS,
    TEXT_INPUTS,
    handover_value,
    is_refiner_checkpoint,
)
from flowrl.encoding.codec import value_text
from flowrl.encoding.grammar import (
    NUMBER_CHARS,
    STR_CLOSED,
    STR_IN,
    ClassRule,
    ConstraintError,
    checkpoint_limits,
    file_group,
    json_string_step,
    link_target,
    num_complete,
)

FED_ONCE = (
    "LATENT",
    "IMAGE",
)  # a latent or image goes into one input of one class once: a second such line duplicates the first
SHARED_TYPES = (
    "CLIP",
)  # links that go to a used line even while an unused one exists (a refiner's second encoder and the base's CLIP)


def capped_spec(spec: InputSpec, row: RowState, pass_vals: dict | None = None) -> InputSpec:
    """`spec` capped at the practical value (steps, cfg) for the row's checkpoint (comfy.usable.SAMPLER_LIMITS), and for a
    KSamplerAdvanced line bounded by its `pass_vals` (FlowParse.pass_vals: written or pinned values; `_pass_range`)."""
    cap = dict(row.limits).get(spec.name, math.inf)
    if cap < (spec.max if spec.max is not None else math.inf):
        # the training range of a field may start above the cap (KSamplerAdvanced steps come from full-size SDXL
        # flows): the cap wins, and the range keeps width below it (a float is written digit by digit, and a bound
        # on a whole number would let '0' start a value that can never reach it)
        low = cap / 4 if spec.type == "FLOAT" else math.ceil(cap / 3)
        return replace(spec, max=cap, min=None if spec.min is None else min(spec.min, low))
    if pass_vals and spec.name in ("steps", "start_at_step", "end_at_step"):
        lo, hi = _pass_range(spec.name, pass_vals)
        lo, hi = (
            max(lo, -math.inf if spec.min is None else spec.min),
            min(hi, math.inf if spec.max is None else spec.max),
        )
        if lo <= hi:  # a range the field cannot meet stays as it was (no dead end; usable names the break)
            return replace(spec, min=None if lo == -math.inf else lo, max=None if hi == math.inf else hi)
    return spec


def _pass_range(name: str, vals: dict) -> tuple[float, float]:
    """Bounds on a KSamplerAdvanced pass's steps / start / end from what its line wrote: start < end, and
    end < steps exactly when it returns leftover noise (comfy.usable.handover_problems)."""
    steps, start, end = (
        vals.get(n) if isinstance(vals.get(n), int) else None for n in ("steps", "start_at_step", "end_at_step")
    )
    leftover = vals.get("return_with_leftover_noise")
    lo, hi = -math.inf, math.inf
    if name == "end_at_step":
        lo = -math.inf if start is None else start + 1
        if steps is not None and leftover in ("enable", "disable"):
            lo, hi = (lo, steps - 1) if leftover == "enable" else (max(lo, steps), hi)
    elif name == "start_at_step" and end is not None:
        hi = end - 1
    elif name == "steps" and end is not None and leftover in ("enable", "disable"):
        lo, hi = (end + 1, hi) if leftover == "enable" else (lo, end)
    return lo, hi


def _parsed(text: str):
    """A written value as the graph holds it (a JSON number or string, else the bare text)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def is_loader(spec) -> bool:
    """A class with no link inputs (a checkpoint, VAE or upscaler loader): two equal lines of it load the same file twice."""
    return not any(i.kind == "link" for i in spec.inputs.values())


@dataclass
class RowState:
    """Parse state of one generated flow."""

    lines: list[tuple[str, ...]] = field(default_factory=list)  # output types of finished lines
    has_output: bool = False
    cls: str | None = None  # class of the current line; None at a line start
    used: set[str] = field(default_factory=set)
    prefix: str = ""  # partial class / ' name=' / newline text
    name: str | None = None  # input whose value is being written
    value: str = ""  # its text so far
    done: bool = False
    has_sampler: bool = False
    open: frozenset[int] = frozenset()  # finished lines (1-based) that are no output node and feed nothing yet
    prompt_lines: frozenset[int] = frozenset()  # finished lines that wrote the prompt placeholder
    text_lines: frozenset[int] = frozenset()  # finished lines that wrote another text (a negative prompt)
    line_text: str = ""  # '' / 'prompt' / 'text': what the current line wrote into a text input so far
    fed: frozenset[tuple[str, str, int]] = frozenset()  # (class, input, line) of every latent or image link written
    limits: tuple[
        tuple[str, float], ...
    ] = ()  # practical sampler settings of the checkpoint written ((input, max), ...)
    group: str | None = None  # architecture group (sd15 / sdxl) of the first checkpoint or LoRA file written
    refiner_models: frozenset[int] = frozenset()  # finished lines whose MODEL is the SDXL refiner's (through patches)
    refiner_conds: frozenset[int] = frozenset()  # finished lines whose conditioning is the refiner's text encoder's
    line_refiner: bool | None = (
        None  # whether the current line's model (or conditioning) link is the refiner's; None: none yet
    )
    vals: tuple[tuple[str, str], ...] = ()  # (input, written value) of the current line's finished widgets and links
    leftover: tuple[
        tuple[int, tuple], ...
    ] = ()  # (line, its inputs) of KSamplerAdvanced passes returned with leftover noise
    empty_latents: frozenset[int] = frozenset()  # EmptyLatentImage lines (a KSampler on one denoises 1)
    classes: tuple[str, ...] = ()  # class of every finished line
    loaded: frozenset[tuple[str, str, str]] = (
        frozenset()
    )  # (class, input, value) of the files finished loader lines load

    def types(self, with_current: ClassRule | None = None) -> frozenset[str]:
        out = {t for line in self.lines for t in line}
        if with_current is not None:
            out.update(with_current.spec.outputs)
        return frozenset(out)


class FlowParse:
    """How a sampled token's text advances a row's parse state (`RowState`); FlowConstraint adds the masks."""

    def feed(self, row: RowState, text: str) -> None:
        """Advance `row` by a token's text; raises ConstraintError when the text breaks the grammar."""
        while text:
            if row.cls is not None and row.name is not None:
                text = self._feed_value(row, text)
                continue
            forms, _ = self._struct_forms(row, math.inf, False, capped=False)
            p = row.prefix + text
            hit = max((w for w in forms if p.startswith(w)), key=len, default=None)  # 'FreeU_V2' over 'FreeU'
            if hit is None:
                if not any(w.startswith(p) for w in forms):
                    raise ConstraintError(f"unexpected text {p!r} at line {len(row.lines) + 1}")
                row.prefix, text = p, ""
                continue
            action, text, row.prefix = forms[hit], p[len(hit) :], ""
            if action[0] == "class":
                row.cls, row.used = action[1], set()
            elif action[0] == "name":
                row.name, row.value = action[1], ""
            else:
                self._end_line(row)

    def _end_line(self, row: RowState) -> None:
        spec = self.g.classes[row.cls].spec
        row.lines.append(tuple(spec.outputs))
        if row.line_text == "prompt":
            row.prompt_lines = row.prompt_lines | {len(row.lines)}
        elif row.line_text == "text":
            row.text_lines = row.text_lines | {len(row.lines)}
        row.line_text = ""
        if not spec.is_output_node:
            row.open = row.open | {len(row.lines)}
        if row.line_refiner and "MODEL" in spec.outputs:
            row.refiner_models = row.refiner_models | {len(row.lines)}
        if row.cls in REFINER_ENCODERS:
            row.refiner_conds = row.refiner_conds | {len(row.lines)}
        if row.cls == ADVANCED and dict(row.vals).get("return_with_leftover_noise") == "enable":
            row.leftover = row.leftover + ((len(row.lines), tuple((n, _parsed(v)) for n, v in row.vals)),)
        if row.cls == EMPTY_LATENT:
            row.empty_latents = row.empty_latents | {len(row.lines)}
        row.classes = row.classes + (row.cls,)
        if is_loader(spec):
            row.loaded = row.loaded | {(row.cls, n, v) for n, v in row.vals if n.endswith("_name")}
        row.line_refiner, row.vals = None, ()
        row.has_output = row.has_output or spec.is_output_node
        row.has_sampler = row.has_sampler or self.g.is_sampler(row.cls)
        row.cls, row.used = None, set()

    def _feed_value(self, row: RowState, text: str) -> str:
        """Append as much of `text` to the current value as it continues; return the rest (after the value ends)."""
        rule = self.g.classes[row.cls]
        spec = rule.spec.inputs[row.name]
        forms = self._link_forms(row, spec) if spec.kind == "link" else self._widget_forms(row, rule, row.name)
        spec = capped_spec(spec, row, self.pass_vals(row))
        if forms is None and spec.type in ("INT", "FLOAT"):
            i = 0
            while i < len(text) and text[i] in NUMBER_CHARS:
                i += 1
            row.value += text[:i]
            complete = num_complete(row.value, spec)
            rest = text[i:]
        elif forms is None and (row.value.startswith('"') or (not row.value and text.startswith('"'))):
            if not row.value:
                row.value, text = '"', text[1:]
            state = json_string_step(STR_IN, row.value[1:])
            i = 0
            while i < len(text) and state != STR_CLOSED:
                state = json_string_step(state, text[i])
                if state < 0:
                    raise ConstraintError(f"invalid JSON string text {text!r}")
                i += 1
            row.value += text[:i]
            rest, complete = text[i:], state == STR_CLOSED
        else:
            if forms is None:
                forms = [w for w in rule.vocab.get(row.name, []) if not w.startswith('"')]
            p = row.value + text
            longest = max((w for w in forms if p.startswith(w)), key=len, default=None)
            if any(w.startswith(p) for w in forms):
                row.value, rest = p, ""
            elif longest is not None:
                row.value, rest = longest, p[len(longest) :]
            else:
                raise ConstraintError(f"value {p!r} is not allowed for {row.cls}.{row.name}")
            complete = row.value in forms
        if rest:
            if not complete:
                raise ConstraintError(f"value {row.value!r} of {row.cls}.{row.name} ended early")
            row.used.add(row.name)
            row.vals = row.vals + ((row.name, row.value),)
            row.open = row.open - {link_target(row.value)}
            if row.name == "ckpt_name" and row.cls == "CheckpointLoaderSimple":
                caps = dict(row.limits)
                for name, cap in checkpoint_limits(row.value).items():
                    caps[name] = min(cap, caps.get(name, math.inf))
                row.limits = tuple(sorted(caps.items()))
                row.line_refiner = is_refiner_checkpoint(row.value.strip('"')) or None
            elif row.line_refiner is None and spec.kind == "link" and spec.type in ("MODEL", "CONDITIONING"):
                refiner = row.refiner_models if spec.type == "MODEL" else row.refiner_conds
                row.line_refiner = link_target(row.value) in refiner
            if row.group is None and spec.kind != "link":
                row.group = file_group(row.name, row.value)
            if spec.kind == "link" and spec.type in FED_ONCE:
                row.fed = row.fed | {(row.cls, row.name, link_target(row.value))}
            if row.name in TEXT_INPUTS and not row.value.startswith("@"):
                row.line_text = "prompt" if PROMPT_PLACEHOLDER in row.value else (row.line_text or "text")
            row.name, row.value = None, ""
        return rest

    # ------------------------------------------------------------ two-pass KSamplerAdvanced (comfy.usable.handover_problems)

    def _first_pass(self, row: RowState, line: int) -> dict | None:
        """The inputs of the pass with leftover noise at `line`, else None (a fresh latent)."""
        return next((dict(inputs) for k, inputs in row.leftover if k == line), None)

    def _handover_fits(self, row: RowState, first: dict | None) -> bool:
        """Whether the current KSamplerAdvanced line, as written so far, can follow `first` (None: a fresh latent)."""
        return all(handover_value(first, n) in (None, _parsed(v)) for n, v in row.vals)

    def _pins(self, row: RowState) -> dict[str, set]:
        """Values the handover rules allow for the current KSamplerAdvanced line's unwritten fields (absent: free).

        The pass the line follows (or every pass it can still follow: the latents its link may still take) sets steps,
        scheduler, start and add_noise; a pin holds only where all of them agree on a value or a few values.
        """
        vals = dict(row.vals)
        lines = (
            [link_target(vals["latent_image"])]
            if "latent_image" in vals
            else [
                link_target(w)
                for w in self._link_forms(replace(row, value=""), self.g.classes[ADVANCED].spec.inputs["latent_image"])
            ]
        )
        firsts = [f for f in (self._first_pass(row, k) for k in lines) if self._handover_fits(row, f)]
        pins = {n: {handover_value(f, n) for f in firsts} for n in CONTINUED if n not in vals}
        return {n: w for n, w in pins.items() if w and None not in w}

    def pass_vals(self, row: RowState) -> dict | None:
        """A KSamplerAdvanced line's written values (parsed), with the single values pinned for unwritten ones; else None."""
        if row.cls != ADVANCED:
            return None
        pinned = {n: next(iter(w)) for n, w in self._pins(row).items() if len(w) == 1}
        return pinned | {n: _parsed(v) for n, v in row.vals}

    def _widget_forms(self, row: RowState, rule: ClassRule, name: str) -> list[str] | None:
        """The closed set of written values of a widget (FlowGrammar.value_forms), narrowed by the handover rules.

        A KSamplerAdvanced pass takes steps, scheduler and start from the pass it continues (or adds noise from step 0 on a
        fresh latent; `_pins`), and returns leftover noise exactly when it stops before its last step (pinned steps count).
        A pin that the field's range refuses is dropped (the flow still validates; the usable check then names the break).
        """
        forms = self.g.value_forms(rule, name)
        if (
            row.cls == "KSampler"
            and name == "denoise"
            and link_target(dict(row.vals).get("latent_image", "@0")) in row.empty_latents
        ):
            spec = capped_spec(rule.spec.inputs[name], row)
            return [w for w in ("1", "1.0") if num_complete(w, spec)] or forms  # a first pass denoises fully
        if row.cls != ADVANCED:
            return forms
        if name == "return_with_leftover_noise":
            vals = self.pass_vals(row)
            steps, end = vals.get("steps"), vals.get("end_at_step")
            wants = (
                {"enable" if end < steps else "disable"} if isinstance(steps, int) and isinstance(end, int) else None
            )
        else:
            wants = self._pins(row).get(name)
        if wants is None:
            return forms
        texts = {value_text(w) for w in wants}
        if forms is not None:
            return [w for w in forms if w in texts] or forms
        spec = capped_spec(rule.spec.inputs[name], row, self.pass_vals(row))
        return sorted(w for w in texts if num_complete(w, spec)) or None

    def _new_row(self) -> RowState:
        return RowState(has_sampler=not self.g.samplers)  # a grammar without sampler classes cannot ask for one

    def _reset(self, input_ids: torch.Tensor) -> None:
        b, width = input_ids.shape
        p = self.prompt_length
        self._starts = [width] * b if p is None else ([int(p)] * b if isinstance(p, int) else [int(x) for x in p])
        if len(self._starts) != b:
            raise ConstraintError(f"prompt_length has {len(self._starts)} entries for a batch of {b}; pass one per row")
        self.rows = [self._new_row() for _ in range(b)]
        self.forced = []
        self.allowed_steps = []
        # a budget below the cheapest complete flow cannot be met: then only the grammar is enforced (no finishing mode)
        self._hopeless = self.max_new_tokens is not None and self.max_new_tokens < self._cost(self._new_row())
        for r, row in enumerate(self.rows):
            for tok in input_ids[r, self._starts[r] :].tolist():
                self._advance(row, tok)

    def _advance(self, row: RowState, tok: int) -> None:
        if row.done:
            return
        if tok == self.g.eos:
            row.done = True
            return
        self.feed(row, self.g.tokens[tok])
