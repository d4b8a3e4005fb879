"""`FlowGrammar`: the flow grammar (flowrl.encoding.grammar) as token tables and masks for one tokenizer,
built once and shared by the constrained-decoding processors (flowrl.policy.decoding.constrained).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import torch

from flowrl.comfy.catalog import Catalog, InputSpec, load_catalog
from flowrl.comfy.validate import check_value, types_compatible
from flowrl.encoding.codec import value_text
from flowrl.encoding.grammar import (
    LINK_COST,
    NUMBER_CHARS,
    STR_CLOSED,
    STR_ESC,
    STR_IN,
    ClassRule,
    ConstraintError,
    json_string_step,
    narrowed_spec,
    num_target,
    num_viable,
    spec_is_sampler,
)
from flowrl.encoding.policy_view import policy_spec
from flowrl.encoding.schema import Schema
from flowrl.encoding.vocab import class_token, name_token


class FlowGrammar:
    """Token tables for one tokenizer and one set of class types (built once, shared by processors)."""

    def __init__(self, tokenizer, schema: Schema | None = None, catalog: Catalog | None = None):
        self.catalog = catalog or load_catalog()
        vocab_size = len(tokenizer)
        self.tokens = tokenizer.batch_decode(
            [[i] for i in range(vocab_size)], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
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
            raise ConstraintError(
                "no class type of the schema (or flow token of the tokenizer) is in the node catalog; "
                "rerun the encode stage (dvc repro encode) and load the policy with its flow tokens"
            )
        self.classes: dict[str, ClassRule] = {}
        structural = {class_token(ct) for ct in self.catalog.specs} | {
            name_token(n) for s in self.catalog.specs.values() for n in s.inputs
        }
        # without a schema, the tokenizer's flow value tokens (model names, samplers, '<prompt>') stand in for every field's vocabulary
        token_values = sorted(
            t.content
            for t in tokenizer.added_tokens_decoder.values()
            if not t.special and t.content not in structural and not t.content.startswith("@")
        )
        for ct in sorted(names):
            spec = policy_spec(self.catalog.get(ct))
            if schema is not None:
                spec = narrowed_spec(spec, schema.classes[ct])
                values = {
                    n: [v for v in f.vocab if isinstance(v, str) and v.strip()]
                    for n, f in schema.classes[ct].fields.items()
                }
            else:
                values = {
                    n: token_values
                    for n, i in spec.inputs.items()
                    if i.kind == "widget" and i.type in ("STRING", "COMBO")
                }
            vocab = {}
            for n, vals in values.items():
                if n in spec.inputs:
                    forms = sorted({value_text(v) for v in vals})
                    vocab[n] = [
                        w
                        for w in forms
                        if check_value(spec.inputs[n], json.loads(w) if w.startswith('"') else w) is None
                    ]
            self.classes[ct] = ClassRule(
                spec,
                class_token(ct),
                {n: name_token(n) for n in spec.inputs},
                [n for n, i in spec.inputs.items() if i.required],
                vocab,
            )
        # no flow repeats a class more often than a training flow did (a model that cannot find its favourite file
        # otherwise writes loader after loader); unknown counts (no schema, an old one) leave a class uncapped
        self.max_per_flow = {
            ct: schema.classes[ct].max_per_graph
            for ct in self.classes
            if schema is not None and schema.classes[ct].max_per_graph > 0
        }
        # a text-to-image flow denoises a latent with a model: EOS waits for a sampler (docs/policy.md)
        self.samplers = sorted(ct for ct, r in self.classes.items() if spec_is_sampler(r.spec))
        self._json_tables()
        self.number_ids = [i for s, ids in self.by_text.items() if set(s) <= NUMBER_CHARS for i in ids]
        self._mask_cache: dict = {}
        self._memo: dict = {}
        self._tok_len_cache: dict[str, int] = {}

    def _json_tables(self) -> None:
        """Per JSON-string state, the tokens that stay inside the string or close it exactly at their end."""
        n = self.vocab_size
        self.json_next = {s: torch.full((n,), -1, dtype=torch.int8) for s in (STR_IN, STR_ESC)}
        opens = torch.zeros(n, dtype=torch.bool)
        for text, ids in self.by_text.items():
            for s in (STR_IN, STR_ESC):
                self.json_next[s][ids] = json_string_step(s, text)
            if text.startswith('"') and json_string_step(STR_IN, text[1:]) >= 0:
                opens[ids] = True
        self.json_inside = {s: t >= 0 for s, t in self.json_next.items()}
        self.json_close = {s: t == STR_CLOSED for s, t in self.json_next.items()}
        self.json_open = opens

    # ------------------------------------------------------------ token-level helpers

    def tok_len(self, text: str) -> int:
        """Tokens of `text` under greedy longest match (what the finishing mode writes)."""
        if text not in self._tok_len_cache:
            pos = count = 0
            while pos < len(text):
                for L in range(min(self.max_token_chars, len(text) - pos), 0, -1):
                    if text[pos : pos + L] in self.by_text:
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
                    rest = w[len(prefix) :]
                    ids.extend(self.by_text.get(rest) or self.greedy_next(rest))
            mask = self.ids_mask(ids)
            self._remember(key, mask)
        return mask

    def number_mask(self, spec: InputSpec, text: str) -> torch.Tensor:
        """Number tokens that keep `text` a viable prefix of a number the input accepts (cached)."""
        key = ("num", spec.type, spec.min, spec.max, text)
        mask = self._mask_cache.get(key)
        if mask is None:
            mask = self.ids_mask([i for i in self.number_ids if num_viable(text + self.tokens[i], spec)])
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
            return num_target(spec)
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
            return sorted({value_text(c) for c in spec.choices if isinstance(c, str)})
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
        return any(types_compatible(want, t) for t in types)

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
                    if any(types_compatible(t, o) for o in rule.spec.outputs) and cost < best.get(t, (math.inf, ""))[0]:
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
                    if i.kind == "link" and any(types_compatible(i.type, o) for o in outputs):
                        need = sum(
                            best.get(rule.spec.inputs[m].type, (math.inf, ""))[0]
                            for m in rule.required
                            if rule.spec.inputs[m].kind == "link"
                            and not self.provides(types | frozenset(outputs), rule.spec.inputs[m].type)
                        )
                        extra = 0 if n in rule.required else self.input_cost(rule, n)
                        found.append(
                            (self.line_cost(ct) + extra + need + (0 if rule.spec.is_output_node else out_cost), ct, n)
                        )
                        break
            self._memo[key] = min(found, default=(math.inf, None, None))
        return self._memo[key]

    def reaches_output(self, outputs: tuple[str, ...], blocked: frozenset[str]) -> bool:
        """Whether a chain of classes outside `blocked` leads from a node with `outputs` to an output node."""
        key = ("reaches_output", outputs, blocked)
        if key not in self._memo:
            seen, frontier, found = set(outputs), list(outputs), False
            while frontier and not found:
                out = frontier.pop()
                for ct, rule in self.classes.items():
                    spec = rule.spec
                    if ct in blocked or not any(
                        i.kind == "link" and types_compatible(i.type, out) for i in spec.inputs.values()
                    ):
                        continue
                    found = found or spec.is_output_node
                    frontier += [o for o in spec.outputs if o not in seen]
                    seen.update(spec.outputs)
            self._memo[key] = found
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
