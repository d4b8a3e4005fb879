"""Features of a text prompt: soft style-family scores, subject cues, quality tags, LoRA tags, attention weights."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

# cue lists, kept as written (the formatter would put one word per line)
# fmt: off
STYLE_FAMILIES = (
    "photo_portrait", "photo_landscape", "anime", "fantasy_illustration", "oil_painting",
    "render_3d", "scifi_cyberpunk", "architecture_interior", "cartoon_comic", "food_product",
)

# Cue words per style family; a cue counts once per prompt, multi-word cues weigh more.
FAMILY_CUES: dict[str, tuple[str, ...]] = {
    "photo_portrait": ("portrait", "headshot", "close-up", "closeup", "raw photo", "photorealistic", "85mm", "f/1.8",
                       "f/1.4", "bokeh", "skin texture", "detailed skin", "freckles", "editorial", "candid", "dslr",
                       "canon", "kodak", "portra", "film photography", "rembrandt lighting", "woman", "man", "face",
                       "studio lighting", "photograph", "photo of", "realistic", "hyperrealistic", "fujifilm", "sony a7"),
    "photo_landscape": ("landscape", "mountain", "lake", "forest", "canyon", "coastline", "meadow", "waterfall", "valley",
                        "glacier", "fields", "terraces", "national geographic", "wide-angle", "aerial", "drone", "panorama",
                        "milky way", "sunrise", "16mm", "f/11", "nd filter", "hdr", "nikon", "river", "ocean", "desert",
                        "scenery", "hills", "landscape photography", "long exposure"),
    "anime": ("anime", "1girl", "1boy", "2girls", "solo", "manga", "waifu", "magical girl", "twintails", "heterochromia",
              "school uniform", "kimono", "looking at viewer", "blush", "cat ears", "shrine maiden", "idol", "maid",
              "cel shading", "cel shaded", "studio ghibli", "ghibli", "key visual", "pixiv", "danbooru", "chibi",
              "light novel", "visual novel", "kawaii", "sidelocks", "makoto shinkai"),
    "fantasy_illustration": ("fantasy", "dragon", "wizard", "sorcer", "elf", "elven", "knight", "castle", "magic",
                             "enchanted", "mythical", "dungeons", "concept art", "artstation", "digital painting",
                             "illustration", "epic", "greg rutkowski", "d&d", "paladin", "runes", "fairy", "rpg",
                             "high fantasy", "spell", "warrior", "ancient ruins"),
    "oil_painting": ("oil painting", "oil on canvas", "canvas", "impasto", "brush strokes", "brushstrokes", "painterly",
                     "impressionis", "baroque", "renaissance", "classical painting", "still life", "van gogh", "rembrandt",
                     "monet", "watercolor", "gouache", "palette knife", "fine art", "museum", "old master", "acrylic",
                     "chiaroscuro", "vermeer", "sargent"),
    "render_3d": ("3d render", "3d", "octane", "unreal engine", "blender", "cinema 4d", "c4d", "ray tracing", "raytracing",
                  "isometric", "clay", "pixar", "toy", "figurine", "vinyl", "blind box", "chibi 3d", "subsurface",
                  "redshift", "cgi", "low poly", "volumetric", "3d model", "render", "zbrush", "stylized 3d"),
    "scifi_cyberpunk": ("cyberpunk", "sci-fi", "scifi", "science fiction", "neon", "futuristic", "cyborg", "android",
                        "robot", "mecha", "spaceship", "space station", "hologram", "holographic", "dystopian", "blade runner",
                        "synthwave", "circuit", "augmented", "laser", "starship", "alien planet", "cybernetic", "tech"),
    "architecture_interior": ("interior", "living room", "bedroom", "kitchen", "architecture", "architectural", "lobby",
                              "loft", "villa", "building", "facade", "minimalist", "scandinavian", "mid-century",
                              "interior design", "archviz", "vray", "furniture", "cozy room", "office", "hallway",
                              "library room", "skyscraper", "house", "cathedral interior", "bathroom"),
    "cartoon_comic": ("cartoon", "comic", "comic book", "toon", "disney", "pixar style", "flat colors", "flat color",
                      "thick outlines", "bold outlines", "sticker", "children's book", "storybook", "caricature",
                      "mascot", "doodle", "pop art", "halftone", "graphic novel", "vector", "simpsons", "looney",
                      "saturday morning", "funny", "cute"),
    "food_product": ("food", "dish", "plate", "burger", "pizza", "sushi", "cake", "dessert", "coffee", "cocktail",
                     "bottle", "perfume", "product photo", "product photography", "packshot", "commercial photography",
                     "studio shot", "advertising", "on a marble", "wooden table", "macro", "bowl", "ramen", "pastry",
                     "chocolate", "fruit", "watch", "sneaker", "cosmetic", "gourmet", "food photography", "delicious"),
}

FACE_CUES = ("portrait", "face", "headshot", "close-up", "closeup", "woman", "man", "girl", "boy", "1girl", "1boy",
             "2girls", "person", "people", "eyes", "smile", "lady", "guy", "child", "character", "selfie", "skin")
LANDSCAPE_CUES = ("landscape", "scenery", "mountain", "forest", "valley", "ocean", "sea", "lake", "city", "skyline",
                  "panorama", "wide-angle", "aerial", "field", "desert", "river", "horizon", "vista", "street")
TEXT_CUES = ('"', "text", "logo", "lettering", "typography", "sign that says", "words", "title", "poster")
PIXEL_CUES = ("pixel", "pixel art", "pixelart", "pixelated", "8-bit", "8bit", "16-bit", "16bit", "sprite", "retro game")
DETAIL_CUES = ("detailed", "intricate", "highly detailed", "ultra detailed", "8k", "4k", "uhd", "hdr", "sharp focus",
               "hyperdetailed", "extremely detailed", "fine details", "tack sharp", "high resolution", "highres")
QUALITY_TAGS = ("masterpiece", "best quality", "high quality", "ultra detailed", "8k", "highres", "award winning",
                "score_9", "score_8_up", "absurdres", "top quality", "amazing quality")
# fmt: on

_LORA_RE = re.compile(r"<lora:([^:>]+)(?::([-+]?\d*\.?\d+))?[^>]*>", re.IGNORECASE)
_WEIGHT_RE = re.compile(r"\(([^():]+):\s*([-+]?\d*\.?\d+)\)")
_WORD_RE = re.compile(r"[a-z0-9][a-z0-9'/&.+-]*")


@dataclass(frozen=True)
class PromptFeatures:
    """What the simulator knows about a prompt.

    `families` sums to 1 (soft multi-label); `face`, `landscape`, `text`, `detail`, `pixel` are cues in [0, 1].
    """

    families: dict[str, float]
    face: float
    landscape: float
    text: float
    detail: float
    quality_tags: int
    loras: tuple[tuple[str, float], ...] = field(default_factory=tuple)
    attention: tuple[float, ...] = field(default_factory=tuple)
    n_words: int = 0
    pixel: float = 0.0

    @property
    def family(self) -> str:
        """The most likely style family."""
        return max(self.families, key=self.families.get)

    def style_share(self, style: str) -> float:
        """How much the prompt asks for a checkpoint/LoRA style ('photo', 'anime', 'art', '3d', 'general')."""
        return sum(w * FAMILY_STYLE_FIT[f].get(style, 0.0) for f, w in self.families.items())


# How well each component style (flowrl.comfy.components.STYLES) serves a prompt family, in [0, 1].
FAMILY_STYLE_FIT: dict[str, dict[str, float]] = {
    "photo_portrait": {"photo": 1.0, "general": 0.6, "art": 0.3, "3d": 0.2, "anime": 0.0},
    "photo_landscape": {"photo": 1.0, "general": 0.7, "art": 0.45, "3d": 0.25, "anime": 0.1},
    "anime": {"anime": 1.0, "general": 0.4, "art": 0.45, "3d": 0.3, "photo": 0.0},
    "fantasy_illustration": {"art": 1.0, "general": 0.7, "anime": 0.45, "3d": 0.5, "photo": 0.3},
    "oil_painting": {"art": 1.0, "general": 0.6, "photo": 0.25, "anime": 0.2, "3d": 0.15},
    "render_3d": {"3d": 1.0, "general": 0.6, "art": 0.5, "anime": 0.25, "photo": 0.4},
    "scifi_cyberpunk": {"art": 0.75, "general": 0.75, "3d": 0.85, "photo": 0.6, "anime": 0.45},
    "architecture_interior": {"photo": 1.0, "general": 0.7, "3d": 0.7, "art": 0.4, "anime": 0.05},
    "cartoon_comic": {"3d": 0.85, "anime": 0.8, "art": 0.6, "general": 0.5, "photo": 0.0},
    "food_product": {"photo": 1.0, "general": 0.65, "3d": 0.5, "art": 0.3, "anime": 0.05},
}

_SOFTMAX_TEMPERATURE = 1.2  # cue-count units; lower = sharper family labels


def _contains(text: str, words: set[str], cue: str) -> bool:
    """A single-word cue matches a whole word (or a word prefix for stems); a phrase matches as a substring."""
    if " " in cue or "/" in cue or "-" in cue or "&" in cue:
        return cue in text
    return cue in words or any(w.startswith(cue) for w in words if len(cue) >= 5)


def _cue_score(text: str, words: set[str], cues: tuple[str, ...]) -> float:
    return sum(1.0 + 0.5 * cue.count(" ") for cue in cues if _contains(text, words, cue))


@lru_cache(maxsize=65536)
def prompt_features(prompt: str) -> PromptFeatures:
    """Detect style family scores, subject cues, quality tags, LoRA tags and attention weights in `prompt`."""
    import math

    text = prompt.lower()
    loras = tuple((m.group(1).strip(), float(m.group(2)) if m.group(2) else 1.0) for m in _LORA_RE.finditer(text))
    attention = tuple(float(m.group(2)) for m in _WEIGHT_RE.finditer(text))
    clean = _LORA_RE.sub(" ", text)
    words = set(_WORD_RE.findall(clean))
    raw = {f: _cue_score(clean, words, cues) for f, cues in FAMILY_CUES.items()}
    peak = max(raw.values())
    exps = {f: math.exp((v - peak) / _SOFTMAX_TEMPERATURE) for f, v in raw.items()}
    total = sum(exps.values())
    families = {f: e / total for f, e in exps.items()}

    def cue(cues: tuple[str, ...], scale: float) -> float:
        return min(1.0, _cue_score(clean, words, cues) / scale)

    face = max(cue(FACE_CUES, 2.0), families["photo_portrait"] + 0.5 * families["anime"])
    landscape = max(cue(LANDSCAPE_CUES, 2.0), families["photo_landscape"] + 0.5 * families["architecture_interior"])
    return PromptFeatures(
        families=families,
        face=min(1.0, face),
        landscape=min(1.0, landscape),
        text=cue(TEXT_CUES, 2.0),
        detail=min(1.0, cue(DETAIL_CUES, 3.0) + 0.05 * len(attention)),
        quality_tags=sum(1 for t in QUALITY_TAGS if t in clean),
        loras=loras,
        attention=attention,
        n_words=len(_WORD_RE.findall(clean)),
        pixel=cue(PIXEL_CUES, 1.0),
    )
