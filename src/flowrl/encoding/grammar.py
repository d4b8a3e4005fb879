"""The grammar of the flow encoding as it is written token by token (flowrl.encoding.codec's format): which
numbers can still become valid, JSON string states, a class's inputs narrowed to what the schema saw.
flowrl.policy.decoding.constrained turns it into logits masks.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field, replace

from flowrl.comfy import components as C
from flowrl.comfy.catalog import InputSpec, NodeSpec
from flowrl.comfy.usable import SAMPLER_LIMITS
from flowrl.comfy.validate import check_value
from flowrl.encoding.schema import ClassStats
from flowrl.errors import FlowRLError

MAX_NUMBER_CHARS = 24  # longest number written (a 64-bit seed has 20 digits)
MAX_FRACTION_DIGITS = 6  # decimals of a float; beyond this binary rounding makes range checks lie
LINK_COST = 3  # tokens of a link value '@k.j' at most ('@k' is one flow token, '.' and 'j' one each)
NUMBER_CHARS = set("0123456789-.")
JSON_ESCAPES = set('"\\/bfnrt')
STR_IN, STR_ESC, STR_CLOSED = 0, 1, 2  # JSON string states: inside, after a backslash, closed


class ConstraintError(FlowRLError):
    """The constraint cannot be built (no usable class types) or a row reached an impossible state."""


def num_intervals(text: str, is_int: bool, bound: float) -> list[tuple[float, float]]:
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
        while d * 10**k <= bound * 10 + 10 and k < MAX_NUMBER_CHARS:
            hi = (d + 1) * 10**k - (1 if is_int else 0)
            out.append((float(d * 10**k), float(hi)))
            k += 1
    return [(-b, -a) for a, b in out] if neg else out


def num_viable(text: str, spec: InputSpec) -> bool:
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
    bound = max(abs(lo) if math.isfinite(lo) else 0, abs(hi) if math.isfinite(hi) else 0, 1) * (
        1e30 if not (math.isfinite(lo) and math.isfinite(hi)) else 1
    )
    for a, b in num_intervals(text, is_int, bound):
        if is_int:
            a = math.ceil(a) if math.isfinite(a) else a
            b = math.floor(b) if math.isfinite(b) else b
        if a <= hi and b >= lo and a <= b:
            return True
    return False


def num_complete(text: str, spec: InputSpec) -> bool:
    """True when the number text is a finished JSON number the input accepts."""
    if not text or text.endswith((".", "-")) or not num_viable(text, spec):
        return False
    value = json.loads(text)
    return check_value(spec, value) is None


def num_target(spec: InputSpec) -> str:
    """The short valid number written when the flow must end quickly: the default, else the bound nearest 0."""
    d = spec.default
    if (
        isinstance(d, (int, float))
        and not isinstance(d, bool)
        and check_value(spec, d) is None
        and len(json.dumps(d)) <= 8
    ):
        return json.dumps(int(d) if spec.type == "INT" else d)
    lo = -math.inf if spec.min is None else spec.min
    hi = math.inf if spec.max is None else spec.max
    v = min(max(0, lo), hi)
    return json.dumps(int(math.ceil(v)) if spec.type == "INT" else v)


def json_string_step(state: int, text: str) -> int:
    """Feed `text` to the inside of a JSON string: the new state, or -1 when rejected (or text after the closing quote)."""
    for _i, ch in enumerate(text):
        if state == STR_CLOSED or ch == "\ufffd" or ch == "\n" or ord(ch) < 0x20:
            return -1
        if state == STR_ESC:
            if ch not in JSON_ESCAPES:
                return -1
            state = STR_IN
        elif ch == "\\":
            state = STR_ESC
        elif ch == '"':
            state = STR_CLOSED
    return state


def narrowed_spec(spec: NodeSpec, stats: ClassStats) -> NodeSpec:
    """`spec` with each number input's range cut to the values the training flows used (schema min/max).

    The node definitions allow 16384-pixel latents and 10,000 steps; a policy free to write those writes
    flows nobody can run. The training flows' range is what the policy may choose from.
    """
    inputs = {}
    for name, i in spec.inputs.items():
        f = stats.fields.get(name)
        if (
            i.kind == "widget"
            and i.type in ("INT", "FLOAT")
            and f is not None
            and f.min is not None
            and f.max is not None
        ):
            # a float range keeps some width: digit by digit, a prefix like '1.29' could never reach exactly 1.3
            pad = max(0.05 * (f.max - f.min), 0.01 * max(abs(f.min), abs(f.max), 1.0)) if i.type == "FLOAT" else 0
            lo = f.min - pad if i.min is None else max(i.min, f.min - pad)
            hi = f.max + pad if i.max is None else min(i.max, f.max + pad)
            i = replace(i, min=lo, max=hi) if lo <= hi else i
        inputs[name] = i
    return replace(spec, inputs=inputs)


def checkpoint_limits(ckpt_name: str) -> dict[str, float]:
    """The practical sampler settings of a checkpoint's family (comfy.usable.SAMPLER_LIMITS: steps, cfg); none for a
    refiner or an unknown file."""
    info = C.checkpoint_info(ckpt_name)
    family = C.guess_family(ckpt_name)
    if (info is not None and info.refiner) or family is None:
        return {}
    return {name: limits[family] for name, limits in SAMPLER_LIMITS.items() if family in limits}


@functools.lru_cache(maxsize=4096)
def file_group(input_name: str, text: str) -> str | None:
    """Architecture group ('sd15' or 'sdxl') of a checkpoint (`ckpt_name`) or LoRA (`lora_name...`) value as written;
    None for another input or a file the component catalog does not know."""
    value = json.loads(text) if text.startswith('"') else text
    if input_name == "ckpt_name":
        info = C.checkpoint_info(value)
    elif input_name.startswith("lora_name"):
        info = C.lora_info(value)
    else:
        return None
    return None if info is None else C.family_group(info.family)


def link_target(value: str) -> int:
    """Line number a link value '@k' or '@k.j' points to; 0 for any other value."""
    if not value.startswith("@"):
        return 0
    head = value[1:].split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def spec_is_sampler(spec: NodeSpec) -> bool:
    """A sampler: takes a MODEL link and returns a LATENT (KSampler, KSamplerAdvanced, SamplerCustom)."""
    return "LATENT" in spec.outputs and any(
        i.kind == "link" and i.type == "MODEL" and i.required for i in spec.inputs.values()
    )


@dataclass
class ClassRule:
    """What a class type may contain: its spec, written form, inputs and planning costs."""

    spec: NodeSpec
    form: str
    name_forms: dict[str, str]  # input name -> ' name='
    required: list[str]
    vocab: dict[str, list[str]] = field(default_factory=dict)  # input name -> written forms of schema values
