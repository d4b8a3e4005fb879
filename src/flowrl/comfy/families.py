"""Which architecture family each of a user's model files belongs to, and a generated workflow kept in one family.

A user's ComfyUI rarely holds the training catalog's files. Each installed checkpoint, LoRA and VAE gets a
family (SD1.5, SDXL, Pony, SDXL Turbo, SDXL Lightning; `flowrl.comfy.components.FAMILIES`) from evidence the
user can check and correct, in this order: their own map (`--checkpoint-family FILE=FAMILY`, or a YAML/JSON
mapping file), the training catalog, a cue in the file name (`xl`, `pony`, `turbo`, ...), else SD1.5
assumed (most community checkpoints and LoRAs are SD1.5). Upscale models work on pixels and fit every family.

`fit_family` then keeps a workflow in its (first) checkpoint's family: a checkpoint, LoRA or VAE of the other
architecture is swapped for an installed one that fits (or the LoRA/VAE node is bypassed), and the latent
size, steps and cfg are brought into the family's ranges. Every assumption and change becomes a note.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

from flowrl.comfy.components import CHECKPOINTS, LORAS, VAES, checkpoint_info, family_group, family_ranges, lora_info
from flowrl.comfy.graph import is_link
from flowrl.comfy.object_info import ObjectInfo, nearest
from flowrl.errors import FlowRLError

LABELS = {
    "sd15": "SD1.5",
    "sdxl": "SDXL",
    "pony": "Pony",
    "sdxl_turbo": "SDXL Turbo",
    "sdxl_lightning": "SDXL Lightning",
}
ALIASES = {
    "sd15": "sd15",
    "sd1.5": "sd15",
    "sd1": "sd15",
    "1.5": "sd15",
    "sdxl": "sdxl",
    "xl": "sdxl",
    "pony": "pony",
    "turbo": "sdxl_turbo",
    "sdxl_turbo": "sdxl_turbo",
    "sdxlturbo": "sdxl_turbo",
    "lightning": "sdxl_lightning",
    "sdxl_lightning": "sdxl_lightning",
    "sdxllightning": "sdxl_lightning",
}
# name cues, first match wins: (regex on the lower-case file name, family)
CUES = (
    (r"turbo", "sdxl_turbo", "turbo"),
    (r"lightning", "sdxl_lightning", "lightning"),
    (r"pony|pdxl|(?<![a-z])pxl", "pony", "pony"),
    (r"sdxl|xl(?![a-z])|xl[v0-9]", "sdxl", "XL"),
    (r"sd[_\-]?1[._\-]?5|v1[._\-]5|(?<![a-z0-9])sd15", "sd15", "SD1.5"),
)
SUGGEST = 70  # WRatio from which an installed file is offered as "did you mean"
SIMILAR = 85  # rapidfuzz WRatio from which a name is "like" a catalog file (realisticVisionV60B1_v60B1VAE)
FILE_INPUTS = {"ckpt_name": "checkpoint", "lora_name": "LoRA", "vae_name": "VAE"}
# latent pixels a family is trained around: SD1.5 ~512², SDXL and its relatives ~1024²
PIXELS = {"sd15": (0.2e6, 0.8e6), "sdxl_turbo": (0.25e6, 1.7e6)}
PIXELS_SDXL = (0.55e6, 1.7e6)
SIZE_CLASSES = ("EmptyLatentImage", "EmptySD3LatentImage")
SAMPLER_CLASSES = ("KSampler", "KSamplerAdvanced")
LORA_OUTPUTS = ("model", "clip")  # LoraLoader output slot i passes input LORA_OUTPUTS[i] through


class FamilyError(FlowRLError):
    """A family map the user gave cannot be read or names something not installed."""


@dataclass(frozen=True)
class Family:
    """A file's family and why: 'your map', 'the training catalog', "name cue 'xl'" or 'no cue in the name'."""

    family: str
    evidence: str

    @property
    def assumed(self) -> bool:
        return self.evidence == "no cue in the name"


def parse_family(value: str, where: str) -> str:
    """A family name (sd15, sdxl, pony, turbo, lightning; case and spaces ignored), else an error naming `where`."""
    key = re.sub(r"[\s\-]+", "_", str(value).strip().lower()).replace("_", "") if value else ""
    family = ALIASES.get(key) or ALIASES.get(str(value).strip().lower())
    if family is None:
        raise FamilyError(
            f"{where}: {value!r} is not a checkpoint family; use one of sd15, sdxl, pony, turbo, lightning"
        )
    return family


def guess_family(name: str, kind: str = "checkpoint") -> Family:
    """The family of a file from the training catalog or a name cue; SD1.5 (said so) when there is none."""
    known = checkpoint_info(name) if kind == "checkpoint" else lora_info(name) if kind == "LoRA" else None
    if known is not None:
        return Family(known.family, "the training catalog")
    if kind == "VAE" and name in {v for vs in VAES.values() for v in vs}:
        return Family(next(f for f, vs in VAES.items() if name in vs), "the training catalog")
    lower = Path(name).name.lower()
    for pattern, family, cue in CUES:
        if re.search(pattern, lower):
            return Family(family, f"name cue {cue!r}")
    catalog = (
        {c.name: c.family for c in CHECKPOINTS}
        if kind == "checkpoint"
        else {lo.name: lo.family for lo in LORAS}
        if kind == "LoRA"
        else {}
    )
    if like := nearest(name, sorted(catalog), SIMILAR):
        return Family(catalog[like], f"named like the catalog's {like}")
    return Family("sd15", "no cue in the name")


class FamilyMap:
    """The family of every installed checkpoint, LoRA and VAE of one ComfyUI, with the evidence for each."""

    def __init__(self, info: ObjectInfo, overrides: dict[str, str] | None = None):
        self.info = info
        self.installed = {
            kind: sorted({v for ct in info.nodes for v in (info.choices(ct, inp) or []) if isinstance(v, str)})
            for inp, kind in FILE_INPUTS.items()
        }
        every = {name for names in self.installed.values() for name in names}
        self.families: dict[str, Family] = {}
        for kind, names in self.installed.items():
            for name in names:
                self.families[name] = guess_family(name, kind)
        for name, family in (overrides or {}).items():
            if name not in every:
                alt = nearest(name, sorted(every), SUGGEST)
                shown = ", ".join(self.installed["checkpoint"][:6]) or "none"
                raise FamilyError(
                    f"--checkpoint-family {name}: no such checkpoint, LoRA or VAE on {info.source}"
                    f"{f'; did you mean {alt!r}' if alt else ''}; give the file name as ComfyUI lists it "
                    f"(checkpoints there: {shown})"
                )
            self.families[name] = Family(family, "your map")

    @classmethod
    def from_arguments(
        cls, info: ObjectInfo, pairs: list[str] | None = None, mapping_file: Path | None = None
    ) -> FamilyMap:
        """The map for `info` with the user's `FILE=FAMILY` pairs and mapping file (YAML or JSON: {file: family})."""
        overrides: dict[str, str] = {}
        if mapping_file is not None:
            overrides.update(read_mapping_file(Path(mapping_file)))
        for pair in pairs or []:
            name, sep, family = pair.rpartition("=")
            if not sep or not name.strip():
                raise FamilyError(
                    f"--checkpoint-family {pair!r}: write FILE=FAMILY, as in house_blend.safetensors=sdxl"
                )
            overrides[name.strip()] = parse_family(family, f"--checkpoint-family {pair}")
        return cls(info, overrides)

    def family(self, name: str) -> Family:
        return self.families.get(name) or guess_family(name)

    def fitting(self, kind: str, group: str) -> list[str]:
        """Installed files of `kind` whose family is in architecture `group` ('sd15' or 'sdxl')."""
        return [n for n in self.installed[kind] if family_group(self.family(n).family) == group]


def read_mapping_file(path: Path) -> dict[str, str]:
    """{file: family} from a small YAML or JSON file; errors name the file and the entry."""
    import yaml

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise FamilyError(
            f"--families {path}: cannot read ({getattr(exc, 'strerror', None) or exc}); "
            "give a YAML or JSON file of `file name: family` lines"
        ) from None
    except yaml.YAMLError as exc:
        raise FamilyError(f"--families {path}: not valid YAML or JSON ({str(exc).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not raw:
        raise FamilyError(
            f"--families {path}: expected a mapping of file name to family "
            "(house_blend.safetensors: sdxl), got " + ("nothing" if not raw else type(raw).__name__)
        )
    return {str(k): parse_family(v, f"--families {path}: {k}") for k, v in raw.items()}


def _size_fits(family: str, width: int, height: int) -> bool:
    low, high = PIXELS.get(family, PIXELS_SDXL)
    return low <= width * height <= high


def _nearest_size(family: str, width: int, height: int) -> tuple[int, int]:
    """The family's resolution with the aspect ratio closest to width:height."""
    ratio = width / height if height else 1.0
    return min(family_ranges(family).resolutions, key=lambda wh: abs(wh[0] / wh[1] - ratio))


def _label(name: str, fam: Family) -> str:
    return f"{name} is {LABELS[fam.family]} ({fam.evidence})"


def fit_family(graph: dict, families: FamilyMap) -> tuple[dict, list[str], list[str]]:
    """`graph` kept in its checkpoint's family, the changes made, and what was assumed about the files it uses.

    Returns:
        (a fitted copy, one note per change or per mismatch nothing installed can fix, one note per file whose
        family was assumed or came from a cue).
    """
    graph = copy.deepcopy(graph)
    ckpts = [nid for nid, n in graph.items() if isinstance(n["inputs"].get("ckpt_name"), str)]
    if not ckpts:
        return graph, [], []
    base = next((nid for nid in ckpts if "refiner" not in graph[nid]["inputs"]["ckpt_name"].lower()), ckpts[0])
    base_name = graph[base]["inputs"]["ckpt_name"]
    fam = families.family(base_name)
    family, group = fam.family, family_group(fam.family)
    changes: list[str] = []
    for nid, node in list(graph.items()):
        if nid not in graph:
            continue
        inputs = node["inputs"]
        for inp, kind in FILE_INPUTS.items():
            value = inputs.get(inp)
            if not isinstance(value, str) or family_group(families.family(value).family) == group:
                continue
            options = [n for n in families.fitting(kind, group) if kind != "checkpoint" or "refiner" not in n.lower()]
            if options:
                inputs[inp] = nearest(value, options) or options[0]
                changes.append(
                    f"node {nid} ({node['class_type']}) {inp}: {value} is {LABELS[families.family(value).family]}, "
                    f"not {LABELS[family]} like {base_name}: {inputs[inp]} instead"
                )
            elif kind in ("LoRA", "VAE") and _bypass(graph, nid, base):
                changes.append(
                    f"node {nid} ({node['class_type']}) with {value} left out: it is "
                    f"{LABELS[families.family(value).family]} and no installed {kind} fits {LABELS[family]}"
                )
                break
            else:  # kept: said, and family_problems keeps reporting it
                changes.append(
                    f"node {nid} ({node['class_type']}) {inp}: {value} is {LABELS[families.family(value).family]}, "
                    f"not {LABELS[family]} like {base_name}, and no installed {kind} fits: left as is"
                )
        if nid not in graph:
            continue
        if (
            node["class_type"] in SIZE_CLASSES
            and isinstance(inputs.get("width"), int)
            and isinstance(inputs.get("height"), int)
        ):
            w, h = inputs["width"], inputs["height"]
            if not _size_fits(family, w, h):
                inputs["width"], inputs["height"] = _nearest_size(family, w, h)
                changes.append(
                    f"node {nid} ({node['class_type']}): {w}x{h} does not suit {LABELS[family]}; "
                    f"{inputs['width']}x{inputs['height']} instead"
                )
        if node["class_type"] in SAMPLER_CLASSES:
            ranges = family_ranges(family)
            for key, (low, high) in (("steps", ranges.steps), ("cfg", ranges.cfg)):
                value = inputs.get(key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and not low <= value <= high:
                    inputs[key] = type(value)(min(max(value, low), high))
                    changes.append(
                        f"node {nid} ({node['class_type']}) {key}: {value} is outside {LABELS[family]}'s "
                        f"{low}-{high}; {inputs[key]} instead"
                    )
    used = sorted({n["inputs"][i] for n in graph.values() for i in FILE_INPUTS if isinstance(n["inputs"].get(i), str)})
    assumed = [
        _label(name, families.family(name))
        + (f"; if it is not, pass --checkpoint-family {name}=FAMILY" if families.family(name).assumed else "")
        for name in used
        if families.family(name).evidence not in ("your map", "the training catalog")
    ]
    return graph, changes, assumed


def _bypass(graph: dict, nid: str, base: str) -> bool:
    """Remove a LoRA or VAE loader, its consumers fed from what it received (a VAE: the checkpoint's own)."""
    node = graph[nid]
    if "vae_name" in node["inputs"]:
        feeds = {0: [base, 2]}
    else:
        feeds = {slot: node["inputs"].get(name) for slot, name in enumerate(LORA_OUTPUTS)}
    for other in graph.values():
        for value in other["inputs"].values():
            if is_link(value) and str(value[0]) == str(nid):
                if not is_link(feeds.get(value[1])):
                    return False
    for other in graph.values():
        for key, value in list(other["inputs"].items()):
            if is_link(value) and str(value[0]) == str(nid):
                other["inputs"][key] = list(feeds[value[1]])
    del graph[nid]
    return True


def family_problems(graph: dict, families: FamilyMap) -> list[str]:
    """What keeps `graph` from being one family (empty: it is): `fit_family`'s notes for it (a fitted graph has
    none, unless a mismatch could not be fixed)."""
    return fit_family(graph, families)[1]
