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
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from transformers import LogitsProcessor

from flowrl.comfy.catalog import Catalog, InputSpec, NodeSpec, load_catalog
from flowrl.comfy.graph import PROMPT_PLACEHOLDER
from flowrl.comfy.usable import MAX_STEPS, STEP_INPUTS, TEXT_INPUTS
from flowrl.comfy.validate import _check_value, _types_compatible
from flowrl.data import components as C
from flowrl.encoding.codec import _value_text
from flowrl.encoding.policy_view import policy_spec
from flowrl.encoding.schema import ClassStats, Schema
from flowrl.encoding.vocab import class_token, name_token
from flowrl.errors import FlowRLError

FED_ONCE = ("LATENT", "IMAGE")  # a latent or image goes into one input of one class once: a second such line duplicates the first
FINISH_SLACK = 4  # spare tokens kept when deciding to steer towards the end (cost estimates are approximate)
MAX_NUMBER_CHARS = 24  # longest number written (a 64-bit seed has 20 digits)
MAX_FRACTION_DIGITS = 6  # decimals of a float; beyond this binary rounding makes range checks lie
LINK_COST = 3  # tokens of a link value '@k.j' at most ('@k' is one flow token, '.' and 'j' one each)
_NUM_CHARS = set("0123456789-.")
_ESCAPES = set('"\\/bfnrt')
_STR_IN, _STR_ESC, _STR_CLOSED = 0, 1, 2  # JSON string states: inside, after a backslash, closed


class ConstraintError(FlowRLError):
    """The constraint cannot be built (no usable class types) or a row reached an impossible state."""


# ---------------------------------------------------------------- numbers


def _num_intervals(text: str, is_int: bool, bound: float) -> list[tuple[float, float]]:
    """Value intervals reachable by appending digits ('.' and decimals for floats) to a number prefix."""
    neg = text.startswith("-")
    body = text[1:] if neg else text
    out: list[tuple[float, float]] = []
    if not body:
        out = [(0.0, math.inf)]
    elif "." in body:
        ip, frac = body.split(".", 1)
        v = float(f"{ip}.{frac or '0'}")
        # more digits reach [v, v + 10^-k) (open above: shrunk a hair); at the digit cap only v itself
        step = 0.0 if len(frac) >= MAX_FRACTION_DIGITS else (10.0 ** -len(frac) if frac else 1.0) * (1 - 1e-9)
        out = [(v, v + step)]
    elif body == "0":
        out = [(0.0, 0.0 if is_int else 1.0)]
    else:
        d = int(body)
        k = 0
        while d * 10 ** k <= bound * 10 + 10 and k < MAX_NUMBER_CHARS:
            hi = (d + 1) * 10 ** k - (1 if is_int else 0)
            out.append((float(d * 10 ** k), float(hi)))
            k += 1
    return [(-b, -a) for a, b in out] if neg else out


def _num_viable(text: str, spec: InputSpec) -> bool:
    """True when the number prefix can still be completed to a value within the input's min/max."""
    if len(text) > MAX_NUMBER_CHARS:
        return False
    is_int = spec.type == "INT"
    body = text[1:] if text.startswith("-") else text
    if "-" in body or body.count(".") > 1 or (is_int and "." in body) or body.startswith("."):
        return False
    if "." in body and len(body.split(".", 1)[1]) > MAX_FRACTION_DIGITS:
        return False
    ip = body.split(".")[0]
    if len(ip) > 1 and ip.startswith("0"):
        return False
    lo = -math.inf if spec.min is None else spec.min
    hi = math.inf if spec.max is None else spec.max
    bound = max(abs(lo) if math.isfinite(lo) else 0, abs(hi) if math.isfinite(hi) else 0, 1) * (1e30 if not (math.isfinite(lo) and math.isfinite(hi)) else 1)
    for a, b in _num_intervals(text, is_int, bound):
        if is_int:
            a = math.ceil(a) if math.isfinite(a) else a
            b = math.floor(b) if math.isfinite(b) else b
        if a <= hi and b >= lo and a <= b:
            return True
    return False


def _num_complete(text: str, spec: InputSpec) -> bool:
    """True when the number text is a finished JSON number the input accepts."""
    if not text or text.endswith((".", "-")) or not _num_viable(text, spec):
        return False
    value = json.loads(text)
    return _check_value(spec, value) is None


def _num_target(spec: InputSpec) -> str:
    """The short valid number written when the flow must end quickly: the default, else the bound nearest 0."""
    d = spec.default
    if isinstance(d, (int, float)) and not isinstance(d, bool) and _check_value(spec, d) is None and len(json.dumps(d)) <= 8:
        return json.dumps(int(d) if spec.type == "INT" else d)
    lo = -math.inf if spec.min is None else spec.min
    hi = math.inf if spec.max is None else spec.max
    v = min(max(0, lo), hi)
    return json.dumps(int(math.ceil(v)) if spec.type == "INT" else v)


# ---------------------------------------------------------------- JSON strings


def _json_string_step(state: int, text: str) -> int:
    """Feed `text` to the inside of a JSON string: the new state, or -1 when rejected (or text after the closing quote)."""
    for i, ch in enumerate(text):
        if state == _STR_CLOSED or ch == "\ufffd" or ch == "\n" or ord(ch) < 0x20:
            return -1
        if state == _STR_ESC:
            if ch not in _ESCAPES:
                return -1
            state = _STR_IN
        elif ch == "\\":
            state = _STR_ESC
        elif ch == '"':
            state = _STR_CLOSED
    return state


# ---------------------------------------------------------------- grammar (shared, per tokenizer)


def narrowed_spec(spec: NodeSpec, stats: ClassStats) -> NodeSpec:
    """`spec` with each number input's range cut to the values the training flows used (schema min/max).

    The node definitions allow 16384-pixel latents and 10,000 steps; a policy free to write those writes
    flows nobody can run. The training flows' range is what the policy may choose from.
    """
    inputs = {}
    for name, i in spec.inputs.items():
        f = stats.fields.get(name)
        if i.kind == "widget" and i.type in ("INT", "FLOAT") and f is not None and f.min is not None and f.max is not None:
            # a float range keeps some width: digit by digit, a prefix like '1.29' could never reach exactly 1.3
            pad = max(0.05 * (f.max - f.min), 0.01 * max(abs(f.min), abs(f.max), 1.0)) if i.type == "FLOAT" else 0
            lo = f.min - pad if i.min is None else max(i.min, f.min - pad)
            hi = f.max + pad if i.max is None else min(i.max, f.max + pad)
            i = replace(i, min=lo, max=hi) if lo <= hi else i
        inputs[name] = i
    return replace(spec, inputs=inputs)


def checkpoint_max_steps(ckpt_name: str) -> float:
    """The practical step count of a checkpoint's family (comfy.usable.MAX_STEPS); inf for a refiner or unknown file."""
    info = C.checkpoint_info(ckpt_name)
    family = C.guess_family(ckpt_name)
    return math.inf if (info is not None and info.refiner) or family is None else MAX_STEPS.get(family, math.inf)


def _step_spec(spec: InputSpec, row: "_Row") -> InputSpec:
    """`spec` with a step count capped at the row's checkpoint's practical steps."""
    if spec.name in STEP_INPUTS and row.max_steps < (spec.max if spec.max is not None else math.inf):
        return replace(spec, max=row.max_steps)
    return spec


def _link_target(value: str) -> int:
    """Line number a link value '@k' or '@k.j' points to; 0 for any other value."""
    if not value.startswith("@"):
        return 0
    head = value[1:].split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def _is_sampler(spec: NodeSpec) -> bool:
    """A sampler: takes a MODEL link and returns a LATENT (KSampler, KSamplerAdvanced, SamplerCustom)."""
    return "LATENT" in spec.outputs and any(i.kind == "link" and i.type == "MODEL" and i.required for i in spec.inputs.values())


@dataclass
class ClassRule:
    """What a class type may contain: its spec, written form, inputs and planning costs."""

    spec: NodeSpec
    form: str
    name_forms: dict[str, str]  # input name -> ' name='
    required: list[str]
    vocab: dict[str, list[str]] = field(default_factory=dict)  # input name -> written forms of schema values


class FlowGrammar:
    """Token tables for one tokenizer and one set of class types (built once, shared by processors)."""

    def __init__(self, tokenizer, schema: Schema | None = None, catalog: Catalog | None = None):
        self.catalog = catalog or load_catalog()
        vocab_size = len(tokenizer)
        self.tokens = tokenizer.batch_decode([[i] for i in range(vocab_size)], skip_special_tokens=False, clean_up_tokenization_spaces=False)
        special = set(tokenizer.all_special_ids)
        self.eos = tokenizer.eos_token_id
        self.by_text: dict[str, list[int]] = {}
        for i, s in enumerate(self.tokens):
            if s and i not in special and "\ufffd" not in s:
                self.by_text.setdefault(s, []).append(i)
        self.max_token_chars = max(len(s) for s in self.by_text)
        self.vocab_size = vocab_size
        if schema is not None:
            names = [ct for ct in schema.classes if ct in self.catalog]
        else:  # the class types the tokenizer has flow tokens (added tokens) for
            added = {t.content for t in tokenizer.added_tokens_decoder.values() if not t.special}
            names = [ct for ct in self.catalog.specs if class_token(ct) in added]
        if not names:
            raise ConstraintError("no class type of the schema (or flow token of the tokenizer) is in the node catalog; "
                                  "rerun the encode stage (dvc repro encode) and load the policy with its flow tokens")
        self.classes: dict[str, ClassRule] = {}
        structural = {class_token(ct) for ct in self.catalog.specs} | {name_token(n) for s in self.catalog.specs.values() for n in s.inputs}
        # without a schema, the tokenizer's flow value tokens (model names, samplers, '<prompt>') stand in for every field's vocabulary
        token_values = sorted(t.content for t in tokenizer.added_tokens_decoder.values()
                              if not t.special and t.content not in structural and not t.content.startswith("@"))
        for ct in sorted(names):
            spec = policy_spec(self.catalog.get(ct))
            if schema is not None:
                spec = narrowed_spec(spec, schema.classes[ct])
                values = {n: [v for v in f.vocab if isinstance(v, str) and v.strip()] for n, f in schema.classes[ct].fields.items()}
            else:
                values = {n: token_values for n, i in spec.inputs.items() if i.kind == "widget" and i.type in ("STRING", "COMBO")}
            vocab = {}
            for n, vals in values.items():
                if n in spec.inputs:
                    forms = sorted({_value_text(v) for v in vals})
                    vocab[n] = [w for w in forms if _check_value(spec.inputs[n], json.loads(w) if w.startswith('"') else w) is None]
            self.classes[ct] = ClassRule(spec, class_token(ct), {n: name_token(n) for n in spec.inputs},
                                         [n for n, i in spec.inputs.items() if i.required], vocab)
        # a text-to-image flow denoises a latent with a model: EOS waits for a sampler (docs/policy.md)
        self.samplers = sorted(ct for ct, r in self.classes.items() if _is_sampler(r.spec))
        self._json_tables()
        self.number_ids = [i for s, ids in self.by_text.items() if set(s) <= _NUM_CHARS for i in ids]
        self._mask_cache: dict = {}
        self._memo: dict = {}
        self._tok_len_cache: dict[str, int] = {}

    def _json_tables(self) -> None:
        """Per JSON-string state, the tokens that stay inside the string or close it exactly at their end."""
        n = self.vocab_size
        self.json_next = {s: torch.full((n,), -1, dtype=torch.int8) for s in (_STR_IN, _STR_ESC)}
        opens = torch.zeros(n, dtype=torch.bool)
        for text, ids in self.by_text.items():
            for s in (_STR_IN, _STR_ESC):
                self.json_next[s][ids] = _json_string_step(s, text)
            if text.startswith('"') and _json_string_step(_STR_IN, text[1:]) >= 0:
                opens[ids] = True
        self.json_inside = {s: t >= 0 for s, t in self.json_next.items()}
        self.json_close = {s: t == _STR_CLOSED for s, t in self.json_next.items()}
        self.json_open = opens

    # ------------------------------------------------------------ token-level helpers

    def tok_len(self, text: str) -> int:
        """Tokens of `text` under greedy longest match (what the finishing mode writes)."""
        if text not in self._tok_len_cache:
            pos = count = 0
            while pos < len(text):
                for L in range(min(self.max_token_chars, len(text) - pos), 0, -1):
                    if text[pos:pos + L] in self.by_text:
                        break
                else:
                    L = 1  # no token for this character: counted as one
                pos, count = pos + L, count + 1
            self._tok_len_cache[text] = count
        return self._tok_len_cache[text]

    def greedy_next(self, rest: str) -> list[int]:
        """Ids of the longest token that starts `rest`."""
        for L in range(min(self.max_token_chars, len(rest)), 0, -1):
            if rest[:L] in self.by_text:
                return self.by_text[rest[:L]]
        return []

    def mask_for(self, key: tuple) -> tuple[torch.Tensor, bool]:
        """The union mask of mask parts, and whether it allows anything (cached by key).

        Parts: ("form", forms, prefix), ("num", type, min, max, text), ("ids", ids), ("json_open",),
        ("json_in", state), ("json_close", state).
        """
        hit = self._mask_cache.get(key)
        if hit is None:
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            for part in key:
                kind = part[0]
                if kind == "form":
                    mask |= self.form_mask(part[1], part[2])
                elif kind == "num":
                    mask |= self.number_mask(InputSpec("number", "widget", part[1], min=part[2], max=part[3]), part[4])
                elif kind == "ids":
                    mask[list(part[1])] = True
                elif kind == "json_open":
                    mask |= self.json_open
                else:
                    mask |= (self.json_inside if kind == "json_in" else self.json_close)[part[1]]
            hit = (mask, bool(mask.any()))
            self._remember(key, hit)
        return hit

    def form_mask(self, forms: tuple[str, ...], prefix: str) -> torch.Tensor:
        """Structural forms (class types, ' name=', newline) as whole tokens: the token equal to the rest of
        each form, else the greedy first piece of it, so the tokenization, and its cost, is the canonical one."""
        key = ("form", forms, prefix)
        mask = self._mask_cache.get(key)
        if mask is None:
            ids: list[int] = []
            for w in forms:
                if w.startswith(prefix) and w != prefix:
                    rest = w[len(prefix):]
                    ids.extend(self.by_text.get(rest) or self.greedy_next(rest))
            mask = self.ids_mask(ids)
            self._remember(key, mask)
        return mask

    def number_mask(self, spec: InputSpec, text: str) -> torch.Tensor:
        """Number tokens that keep `text` a viable prefix of a number the input accepts (cached)."""
        key = ("num", spec.type, spec.min, spec.max, text)
        mask = self._mask_cache.get(key)
        if mask is None:
            mask = self.ids_mask([i for i in self.number_ids if _num_viable(text + self.tokens[i], spec)])
            self._remember(key, mask)
        return mask

    def ids_mask(self, ids: Sequence[int]) -> torch.Tensor:
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        if ids:
            mask[list(ids)] = True
        return mask

    def _remember(self, key, mask: torch.Tensor) -> None:
        if len(self._mask_cache) > 50_000:  # long seeds make many distinct number prefixes
            self._mask_cache.clear()
        self._mask_cache[key] = mask

    # ------------------------------------------------------------ planning costs (tokens)

    def value_target(self, rule: ClassRule, name: str) -> str | None:
        """The cheapest valid written value of a widget (None for link inputs)."""
        key = ("target", rule.spec.class_type, name)
        if key not in self._memo:
            self._memo[key] = self._value_target(rule, name)
        return self._memo[key]

    def _value_target(self, rule: ClassRule, name: str) -> str | None:
        spec = rule.spec.inputs[name]
        if spec.kind == "link":
            return None
        forms = self.value_forms(rule, name)
        if forms is not None:
            return min(forms, key=lambda w: (self.tok_len(w), w)) if forms else None
        if spec.type in ("INT", "FLOAT"):
            return _num_target(spec)
        bare = rule.vocab.get(name, [])
        return min(bare + ['""'], key=lambda w: (self.tok_len(w), w))

    def value_forms(self, rule: ClassRule, name: str) -> list[str] | None:
        """A closed set of written values for a widget, or None when it is a number or free string."""
        key = ("forms", rule.spec.class_type, name)
        if key not in self._memo:
            self._memo[key] = self._value_forms(rule, name)
        return self._memo[key]

    def _value_forms(self, rule: ClassRule, name: str) -> list[str] | None:
        spec = rule.spec.inputs[name]
        if spec.type == "BOOLEAN":
            return ["true", "false"]
        if spec.type == "COMBO" and spec.choices is not None:
            return sorted({_value_text(c) for c in spec.choices if isinstance(c, str)})
        if spec.type == "COMBO" and rule.vocab.get(name):
            return rule.vocab[name]
        return None

    def input_cost(self, rule: ClassRule, name: str) -> int:
        """Tokens of ' name=' plus the cheapest value."""
        key = ("cost", rule.spec.class_type, name)
        if key in self._memo:
            return self._memo[key]
        target = self.value_target(rule, name)
        self._memo[key] = self.tok_len(rule.name_forms[name]) + (LINK_COST if target is None else self.tok_len(target))
        return self._memo[key]

    def line_cost(self, ct: str) -> int:
        """Tokens of a line of `ct` with only its required inputs, newline included."""
        key = ("line", ct)
        if key not in self._memo:
            rule = self.classes[ct]
            self._memo[key] = self.tok_len(rule.form) + sum(self.input_cost(rule, n) for n in rule.required) + 1
        return self._memo[key]

    def provides(self, types: frozenset[str], want: str) -> bool:
        return any(_types_compatible(want, t) for t in types)

    def plan(self, types: frozenset[str]) -> tuple[dict[str, tuple[int, str]], int, str | None, tuple[int, str | None]]:
        """Cheapest way to make each link type, an output node and a sampler from the available output types.

        Returns:
            (type -> (cost, producing class), cost of the cheapest output node line(s), that output class,
            (cost, class) of the cheapest sampler line(s); (0, None) when the grammar has no sampler class).
        """
        key = ("plan", types)
        if key in self._memo:
            return self._memo[key]
        link_types = {i.type for r in self.classes.values() for i in r.spec.inputs.values() if i.kind == "link"}
        best: dict[str, tuple[int, str]] = {}

        def need(ct: str) -> float:
            total = 0
            for n in self.classes[ct].required:
                i = self.classes[ct].spec.inputs[n]
                if i.kind == "link" and not self.provides(types, i.type):
                    total += best.get(i.type, (math.inf, ""))[0]
            return total

        for _ in range(len(self.classes) + 1):  # Bellman-Ford over types
            changed = False
            for ct, rule in self.classes.items():
                cost = self.line_cost(ct) + need(ct)
                for t in link_types:
                    if any(_types_compatible(t, o) for o in rule.spec.outputs) and cost < best.get(t, (math.inf, ""))[0]:
                        best[t], changed = (int(cost), ct), True
            if not changed:
                break
        outs = [(self.line_cost(ct) + need(ct), ct) for ct, r in self.classes.items() if r.spec.is_output_node]
        cost, ct = min(outs, default=(math.inf, None))
        samplers = [(self.line_cost(ct) + need(ct), ct) for ct in self.samplers]
        result = (best, cost, ct, min(samplers, default=(0, None)))
        self._memo[key] = result
        return result

    def finish_cost(self, types: frozenset[str], has_output: bool, has_sampler: bool) -> float:
        """Tokens of the lines still needed before EOS: a sampler (when none is written yet) and an output node."""
        _, out_cost, _, (sampler_cost, _) = self.plan(types)
        return (0 if has_output else out_cost) + (0 if has_sampler else sampler_cost)

    def finish_class(self, types: frozenset[str], has_output: bool, has_sampler: bool) -> str | None:
        """The class to write next on the cheapest way to a complete flow: towards a sampler first, then an output node."""
        _, _, out_ct, (_, sampler_ct) = self.plan(types)
        target = sampler_ct if not has_sampler and sampler_ct is not None else (None if has_output else out_ct)
        return None if target is None else self.first_step(types, target)

    def consumer(self, types: frozenset[str], outputs: tuple[str, ...]) -> tuple[float, str | None, str | None]:
        """Cheapest line that consumes a node with `outputs`: (tokens incl. an output node after it, class, input name)."""
        key = ("consumer", types, outputs)
        if key not in self._memo:
            best, out_cost, _, _ = self.plan(types | frozenset(outputs))
            found = []
            for ct, rule in self.classes.items():
                for n, i in rule.spec.inputs.items():
                    if i.kind == "link" and any(_types_compatible(i.type, o) for o in outputs):
                        need = sum(best.get(rule.spec.inputs[m].type, (math.inf, ""))[0] for m in rule.required
                                   if rule.spec.inputs[m].kind == "link" and not self.provides(types | frozenset(outputs), rule.spec.inputs[m].type))
                        extra = 0 if n in rule.required else self.input_cost(rule, n)
                        found.append((self.line_cost(ct) + extra + need + (0 if rule.spec.is_output_node else out_cost), ct, n))
                        break
            self._memo[key] = min(found, default=(math.inf, None, None))
        return self._memo[key]

    def is_sampler(self, ct: str) -> bool:
        return ct in self.samplers

    def first_step(self, types: frozenset[str], ct: str) -> str:
        """The class to write next to build `ct`: itself when its required links exist, else a missing producer's first step."""
        best = self.plan(types)[0]
        for n in self.classes[ct].required:
            i = self.classes[ct].spec.inputs[n]
            if i.kind == "link" and not self.provides(types, i.type):
                return self.first_step(types, best[i.type][1])
        return ct


# ---------------------------------------------------------------- per-row parse state


@dataclass
class _Row:
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
    max_steps: float = math.inf  # the practical step count of the checkpoint written (Turbo/Lightning: 20)

    def types(self, with_current: ClassRule | None = None) -> frozenset[str]:
        out = {t for line in self.lines for t in line}
        if with_current is not None:
            out.update(with_current.spec.outputs)
        return frozenset(out)


class FlowConstraint(LogitsProcessor):
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

    def __init__(self, tokenizer, schema: Schema | None = None, catalog: Catalog | None = None,
                 prompt_length: int | Sequence[int] | None = None, max_new_tokens: int | None = None,
                 grammar: FlowGrammar | None = None):
        self.g = grammar or FlowGrammar(tokenizer, schema, catalog)
        self.prompt_length = prompt_length
        self.max_new_tokens = max_new_tokens
        self.rows: list[_Row] = []
        self._starts: list[int] = []
        self._last: torch.Tensor | None = None
        self._all = torch.ones(self.g.vocab_size, dtype=torch.bool)
        self._hopeless = False
        self.n_dead_ends = 0  # rows where nothing was allowed (should stay 0; EOS is forced then)
        self.forced: list[torch.Tensor] = []  # per step of the current generation: (B,) True where one token was allowed

    # ------------------------------------------------------------ structure choices

    def _missing(self, row: _Row, extra: str | None = None) -> list[str]:
        rule = self.g.classes[row.cls]
        used = row.used | ({extra} if extra else set())
        return [n for n in rule.required if n not in used]

    def _links_ok(self, types: frozenset[str], spec: InputSpec) -> bool:
        return self.g.provides(types, spec.type)

    def _orphan_cost(self, row: _Row, new: ClassRule | None = None) -> float:
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

    def _tail_cost(self, row: _Row, used_extra: str | None = None) -> int:
        """Tokens to finish the current line from an item end, then an output node and EOS."""
        rule = self.g.classes[row.cls]
        cost = sum(self.g.input_cost(rule, n) for n in self._missing(row, used_extra)) + 1
        has_output = row.has_output or rule.spec.is_output_node
        return (cost + self.g.finish_cost(row.types(rule), has_output, row.has_sampler or self.g.is_sampler(row.cls)) + 1
                + self._orphan_cost(row, rule))

    def _fresh(self, row: _Row, ct: str) -> bool:
        """Whether a `ct` line can take a latent or image that no `ct` line has taken through the same input."""
        rule = self.g.classes[ct]
        for n in rule.required:
            spec = rule.spec.inputs[n]
            if spec.kind == "link" and spec.type in FED_ONCE:
                targets = {k for k, outs in enumerate(row.lines, 1) if any(_types_compatible(spec.type, t) for t in outs)}
                if targets and not targets - {k for c, m, k in row.fed if c == ct and m == n}:
                    return False
        return True

    def _orphan_step(self, row: _Row) -> str | None:
        """In finishing mode, the class to write next towards consuming the first orphan node; None when none can be."""
        types = row.types()
        for k in sorted(row.open):
            _, ct, _ = self.g.consumer(types, row.lines[k - 1])
            if ct is not None:
                return self.g.first_step(types, ct)
        return None

    def _cost(self, row: _Row) -> float:
        """Estimated tokens still needed to reach a complete flow and EOS from this state."""
        if row.cls is None:
            return (self.g.finish_cost(row.types(), row.has_output, row.has_sampler) + 1 + (2 if row.prefix else 0)
                    + self._orphan_cost(row))
        rule = self.g.classes[row.cls]
        if row.name is None:
            return self._tail_cost(row) + (2 if row.prefix else 0)
        spec = rule.spec.inputs[row.name]
        if spec.kind == "link" or self.g.value_forms(rule, row.name) is not None:
            forms = self._link_forms(row, spec) if spec.kind == "link" else self.g.value_forms(rule, row.name)
            value_cost = min((self.g.tok_len(w[len(row.value):]) for w in forms if w.startswith(row.value)), default=0)
        elif spec.type in ("INT", "FLOAT"):
            value_cost = 0 if _num_complete(row.value, spec) else len(_num_target(spec)) + 1
        elif row.value.startswith('"') or not row.value:
            value_cost = 1 if row.value else self.g.tok_len(self.g.value_target(rule, row.name))
        else:
            bare = [w for w in rule.vocab.get(row.name, []) if w.startswith(row.value)]
            value_cost = min((self.g.tok_len(w[len(row.value):]) for w in bare), default=0)
        return value_cost + self._tail_cost(row, row.name)

    def _struct_forms(self, row: _Row, budget: float, finish: bool) -> tuple[dict[str, tuple], bool]:
        """Structural choices at a line start or item end: written form -> action, and whether EOS is allowed."""
        forms: dict[str, tuple] = {}
        if row.cls is None:
            types = row.types()
            complete = row.has_output and row.has_sampler
            if finish:
                ct = self.g.finish_class(types, row.has_output, row.has_sampler)
                if ct is None and complete and row.open and self._orphan_cost(row) <= budget:
                    ct = self._orphan_step(row)
                if ct is not None:
                    forms[self.g.classes[ct].form] = ("class", ct)
                return forms, complete and (not row.open or not forms)
            for ct, rule in self.g.classes.items():
                if not all(self._links_ok(types, rule.spec.inputs[n]) for n in rule.required if rule.spec.inputs[n].kind == "link"):
                    continue
                if not self._fresh(row, ct):
                    continue
                after = sum(self.g.input_cost(rule, n) for n in rule.required) + 1 + self.g.finish_cost(
                    row.types(rule), row.has_output or rule.spec.is_output_node, row.has_sampler or self.g.is_sampler(ct)) + 1
                after += self._orphan_cost(row, rule)
                if self.g.tok_len(rule.form) + after + FINISH_SLACK <= budget:
                    forms[rule.form] = ("class", ct)
            # EOS only once every node feeds something (an orphan node is a flow nobody would write),
            # unless the budget leaves no other line to write
            return forms, complete and (not row.open or not forms)
        rule = self.g.classes[row.cls]
        missing = self._missing(row)
        types = row.types()
        complete_line = not missing
        eos_ok = (complete_line and (row.has_output or rule.spec.is_output_node) and (row.has_sampler or self.g.is_sampler(row.cls))
                  and (finish or (not row.open and rule.spec.is_output_node)))
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

    def _consuming_input(self, row: _Row) -> str | None:
        """An unused input of the current line that could take an orphan node (finishing mode writes it)."""
        rule = self.g.classes[row.cls]
        for n, spec in rule.spec.inputs.items():
            if (n not in row.used and spec.kind == "link" and n in rule.name_forms
                    and any(_types_compatible(spec.type, t) for k in row.open for t in row.lines[k - 1])):
                return n
        return None

    def _link_forms(self, row: _Row, spec: InputSpec, finish: bool = False) -> list[str]:
        forms = [(k, f"@{k}" if j == 0 else f"@{k}.{j}") for k, outs in enumerate(row.lines, 1)
                 for j, t in enumerate(outs) if _types_compatible(spec.type, t)]
        # the prompt goes into the positive conditioning and never into the negative (a usable flow); a latent
        # or image goes into one input of one class once; finishing prefers orphans. Each rule only narrows
        # when a line of the right kind is left, so none can dead-end.
        avoid = row.text_lines if spec.name == "positive" else row.prompt_lines if spec.name == "negative" else frozenset()
        if spec.type in FED_ONCE:
            avoid = avoid | {k for c, n, k in row.fed if c == row.cls and n == spec.name}
        kept = [(k, w) for k, w in forms if k not in avoid] or forms
        if finish:  # (among the links the value written so far can still become: finishing may start mid-value)
            kept = [(k, w) for k, w in kept if k in row.open and w.startswith(row.value)] or kept
        return [w for _, w in kept]

    def _value_parts(self, row: _Row, finish: bool) -> tuple[list[tuple], bool]:
        """Mask parts (see FlowGrammar.mask_for) continuing the current value, and whether it is already complete."""
        rule = self.g.classes[row.cls]
        spec = rule.spec.inputs[row.name]
        g = self.g
        forms = self._link_forms(row, spec, finish) if spec.kind == "link" else g.value_forms(rule, row.name)
        spec = _step_spec(spec, row)
        if forms is None and spec.type in ("INT", "FLOAT"):
            complete = _num_complete(row.value, spec)
            if finish and not row.value:
                return [("ids", tuple(g.greedy_next(_num_target(spec))))], False
            if finish and complete:
                return [], True
            return [("num", spec.type, spec.min, spec.max, row.value)], complete
        if forms is None and (row.value.startswith('"') or not row.value):  # free string: JSON, or a bare vocab value
            if not row.value:
                if finish:
                    return [("ids", tuple(g.greedy_next(g.value_target(rule, row.name))))], False
                bare = tuple(w for w in rule.vocab.get(row.name, []) if not w.startswith('"'))
                return [("json_open",), ("form", bare, "")], False
            state = _json_string_step(_STR_IN, row.value[1:])
            if state == _STR_CLOSED:
                return [], True
            return [("json_close" if finish else "json_in", state)], False
        if forms is None:  # inside a bare vocabulary value of a free-string field
            forms = [w for w in rule.vocab.get(row.name, []) if not w.startswith('"')]
        complete = row.value in forms
        if finish:
            matching = [w for w in forms if w.startswith(row.value) and w != row.value]
            if complete or not matching:
                return [], complete
            target = min(matching, key=lambda w: (g.tok_len(w[len(row.value):]), w))
            return [("ids", tuple(g.greedy_next(target[len(row.value):])))], False
        return [("form", tuple(sorted(forms)), row.value)], complete

    # ------------------------------------------------------------ masks and transitions

    def allowed_key(self, row: _Row, budget: float) -> tuple:
        """The mask parts of the tokens this row may produce next (a hashable key for FlowGrammar.mask_for)."""
        finish = budget <= self._cost(row) + FINISH_SLACK
        parts: list[tuple] = []
        if row.cls is not None and row.name is not None:
            parts, complete = self._value_parts(row, finish)
            if not complete:
                return tuple(parts)
            end = _Row(row.lines, row.has_output, row.cls, row.used | {row.name}, has_sampler=row.has_sampler,
                       open=row.open - {_link_target(row.value)}, prompt_lines=row.prompt_lines, text_lines=row.text_lines,
                       fed=row.fed, max_steps=row.max_steps)
        else:
            end = row
        forms, eos_ok = self._struct_forms(end, budget, finish)
        if finish and end.prefix:
            matching = [w for w in forms if w.startswith(end.prefix)] or [w for w in self._struct_forms(end, math.inf, False)[0] if w.startswith(end.prefix)]
            if matching:
                parts.append(("ids", tuple(self.g.greedy_next(matching[0][len(end.prefix):]))))
        elif finish:
            parts.extend(("ids", tuple(self.g.greedy_next(w))) for w in sorted(forms))
        else:
            parts.append(("form", tuple(sorted(forms)), end.prefix))
        if eos_ok and not end.prefix:
            parts.append(("ids", (self.g.eos,)))
        return tuple(parts)

    def allowed(self, row: _Row, budget: float) -> torch.Tensor:
        """Boolean (V,) mask of the tokens this row may produce next."""
        return self.g.mask_for(self.allowed_key(row, budget))[0]

    def feed(self, row: _Row, text: str) -> None:
        """Advance `row` by a token's text; raises ConstraintError when the text breaks the grammar."""
        while text:
            if row.cls is not None and row.name is not None:
                text = self._feed_value(row, text)
                continue
            forms, _ = self._struct_forms(row, math.inf, False)
            p = row.prefix + text
            hit = max((w for w in forms if p.startswith(w)), key=len, default=None)  # 'FreeU_V2' over 'FreeU'
            if hit is None:
                if not any(w.startswith(p) for w in forms):
                    raise ConstraintError(f"unexpected text {p!r} at line {len(row.lines) + 1}")
                row.prefix, text = p, ""
                continue
            action, text, row.prefix = forms[hit], p[len(hit):], ""
            if action[0] == "class":
                row.cls, row.used = action[1], set()
            elif action[0] == "name":
                row.name, row.value = action[1], ""
            else:
                self._end_line(row)

    def _end_line(self, row: _Row) -> None:
        spec = self.g.classes[row.cls].spec
        row.lines.append(tuple(spec.outputs))
        if row.line_text == "prompt":
            row.prompt_lines = row.prompt_lines | {len(row.lines)}
        elif row.line_text == "text":
            row.text_lines = row.text_lines | {len(row.lines)}
        row.line_text = ""
        if not spec.is_output_node:
            row.open = row.open | {len(row.lines)}
        row.has_output = row.has_output or spec.is_output_node
        row.has_sampler = row.has_sampler or self.g.is_sampler(row.cls)
        row.cls, row.used = None, set()

    def _feed_value(self, row: _Row, text: str) -> str:
        """Append as much of `text` to the current value as it continues; return the rest (after the value ends)."""
        rule = self.g.classes[row.cls]
        spec = rule.spec.inputs[row.name]
        forms = self._link_forms(row, spec) if spec.kind == "link" else self.g.value_forms(rule, row.name)
        spec = _step_spec(spec, row)
        if forms is None and spec.type in ("INT", "FLOAT"):
            i = 0
            while i < len(text) and text[i] in _NUM_CHARS:
                i += 1
            row.value += text[:i]
            complete = _num_complete(row.value, spec)
            rest = text[i:]
        elif forms is None and (row.value.startswith('"') or (not row.value and text.startswith('"'))):
            if not row.value:
                row.value, text = '"', text[1:]
            state = _json_string_step(_STR_IN, row.value[1:])
            i = 0
            while i < len(text) and state != _STR_CLOSED:
                state = _json_string_step(state, text[i])
                if state < 0:
                    raise ConstraintError(f"invalid JSON string text {text!r}")
                i += 1
            row.value += text[:i]
            rest, complete = text[i:], state == _STR_CLOSED
        else:
            if forms is None:
                forms = [w for w in rule.vocab.get(row.name, []) if not w.startswith('"')]
            p = row.value + text
            longest = max((w for w in forms if p.startswith(w)), key=len, default=None)
            if any(w.startswith(p) for w in forms):
                row.value, rest = p, ""
            elif longest is not None:
                row.value, rest = longest, p[len(longest):]
            else:
                raise ConstraintError(f"value {p!r} is not allowed for {row.cls}.{row.name}")
            complete = row.value in forms
        if rest:
            if not complete:
                raise ConstraintError(f"value {row.value!r} of {row.cls}.{row.name} ended early")
            row.used.add(row.name)
            row.open = row.open - {_link_target(row.value)}
            if row.name == "ckpt_name" and row.cls == "CheckpointLoaderSimple":
                row.max_steps = min(row.max_steps, checkpoint_max_steps(row.value))
            if spec.kind == "link" and spec.type in FED_ONCE:
                row.fed = row.fed | {(row.cls, row.name, _link_target(row.value))}
            if row.name in TEXT_INPUTS and not row.value.startswith("@"):
                row.line_text = "prompt" if PROMPT_PLACEHOLDER in row.value else (row.line_text or "text")
            row.name, row.value = None, ""
        return rest

    def _new_row(self) -> _Row:
        return _Row(has_sampler=not self.g.samplers)  # a grammar without sampler classes cannot ask for one

    def _reset(self, input_ids: torch.Tensor) -> None:
        b, width = input_ids.shape
        p = self.prompt_length
        self._starts = [width] * b if p is None else ([int(p)] * b if isinstance(p, int) else [int(x) for x in p])
        if len(self._starts) != b:
            raise ConstraintError(f"prompt_length has {len(self._starts)} entries for a batch of {b}; pass one per row")
        self.rows = [self._new_row() for _ in range(b)]
        self.forced = []
        # a budget below the cheapest complete flow cannot be met: then only the grammar is enforced (no finishing mode)
        self._hopeless = self.max_new_tokens is not None and self.max_new_tokens < self._cost(self._new_row())
        for r, row in enumerate(self.rows):
            for tok in input_ids[r, self._starts[r]:].tolist():
                self._advance(row, tok)

    def _advance(self, row: _Row, tok: int) -> None:
        if row.done:
            return
        if tok == self.g.eos:
            row.done = True
            return
        self.feed(row, self.g.tokens[tok])

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        last = self._last
        same = (last is not None and input_ids.shape[0] == last.shape[0] and input_ids.shape[1] == last.shape[1] + 1
                and torch.equal(input_ids[:, :-1], last))
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
        if allowed.shape[1] != scores.shape[1]:  # the model's vocabulary is padded beyond the tokenizer's
            allowed = torch.cat([allowed, torch.zeros(allowed.shape[0], scores.shape[1] - allowed.shape[1], dtype=torch.bool)], 1)
        return scores.masked_fill(~allowed.to(scores.device), float("-inf"))


SCHEMA_FILE = "flow_schema.json"  # the encode stage's schema, saved by the sft stage beside the policy's tokenizer


def tokenizer_schema(tokenizer) -> Path | None:
    """The schema file saved with a trained policy's tokenizer (`models/sft/flow_schema.json`), if any."""
    path = Path(getattr(tokenizer, "name_or_path", "") or ".") / SCHEMA_FILE
    return path if path.is_file() else None


@functools.lru_cache(maxsize=4)
def _cached_grammar(tokenizer, n_tokens: int, schema_file: Path | None) -> FlowGrammar:
    return FlowGrammar(tokenizer, Schema.load(schema_file) if schema_file else None)


def constraint_processors(policy_cfg, tokenizer, max_new_tokens: int | None = None, schema: Schema | None = None) -> list[LogitsProcessor]:
    """`[FlowConstraint(...)]` when `policy_cfg.constrained` is on, else `[]` (the one-line hook for sampling call sites).

    The grammar's value vocabularies are per field when a schema is given or saved with the tokenizer
    (`tokenizer_schema`); otherwise every flow value token stands in for every file-name field. Built
    grammars are cached per tokenizer (building one decodes the whole vocabulary, ~1 s).
    """
    if not getattr(policy_cfg, "constrained", False) or tokenizer is None:  # None: test fakes that sample no tokens
        return []
    try:
        grammar = FlowGrammar(tokenizer, schema) if schema is not None else _cached_grammar(tokenizer, len(tokenizer), tokenizer_schema(tokenizer))
    except ConstraintError as exc:  # a tokenizer without the flow vocabulary (not a policy of this pipeline)
        warnings.warn(f"constrained decoding is off for this tokenizer: {exc}", stacklevel=2)
        return []
    return [FlowConstraint(tokenizer, schema, max_new_tokens=max_new_tokens or policy_cfg.max_new_tokens, grammar=grammar)]
