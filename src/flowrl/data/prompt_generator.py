"""Offline prompt generator: seeded, compositional prompts in CivitAI style across 10 style families.

Each family has its own subjects, settings, style words and LoRAs, so the best workflow (checkpoint
style, sampler, upscaling) really depends on the prompt. Prompts carry CivitAI syntax: quality tags,
`(word:1.2)` attention weights, `<lora:name:0.8>` tags and, sometimes, a negative prompt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from tqdm import tqdm

from flowrl.data.prompt_cleaning import dedupe_key

FAMILIES: tuple[str, ...] = (
    "photo_portrait",
    "photo_landscape",
    "anime",
    "fantasy_illustration",
    "oil_painting",
    "render_3d",
    "scifi_cyberpunk",
    "architecture_interior",
    "cartoon_comic",
    "food_product",
)


@dataclass(frozen=True)
class FamilyVocab:
    """Words a family's prompts are built from; `lora_style` picks LoRAs from flowrl.comfy.components."""

    subjects: tuple[str, ...]
    details: tuple[str, ...]
    settings: tuple[str, ...]
    styles: tuple[str, ...]
    lighting: tuple[str, ...]
    extras: tuple[str, ...]  # camera terms, media, renderers
    lora_style: str
    loras: tuple[str, ...]  # fallback LoRA file stems (real public CivitAI LoRAs)


# word lists, kept as written (the formatter would put one word per line)
# fmt: off
VOCAB: dict[str, FamilyVocab] = {
    "photo_portrait": FamilyVocab(
        subjects=("portrait of a woman", "portrait of an old fisherman", "close-up of a young man", "headshot of a businesswoman",
                  "portrait of a smiling grandmother", "portrait of a bearded sailor", "portrait of a ballet dancer",
                  "portrait of a jazz musician", "portrait of a farmer", "portrait of a red-haired woman", "portrait of a chef"),
        details=("freckles", "detailed skin texture", "piercing blue eyes", "wind-blown hair", "wrinkles", "soft smile",
                 "wearing a wool coat", "wearing a linen shirt", "silver earrings", "natural makeup"),
        settings=("in a sunlit studio", "on a rainy street", "against a grey backdrop", "in a wheat field", "by a window",
                  "in a cafe", "at the harbor", "in a greenhouse"),
        styles=("RAW photo", "photorealistic", "hyperrealistic", "editorial photography", "candid photo", "film photography"),
        lighting=("soft window light", "rim light", "golden hour", "studio lighting", "Rembrandt lighting", "overcast light"),
        extras=("85mm", "f/1.8", "bokeh", "shallow depth of field", "Canon EOS R5", "Kodak Portra 400", "sharp focus", "DSLR"),
        lora_style="photo",
        loras=("add_detail", "epi_noiseoffset2", "FilmVelvia3", "more_details"),
    ),
    "photo_landscape": FamilyVocab(
        subjects=("mountain lake", "misty pine forest", "desert canyon", "rocky coastline", "alpine meadow", "waterfall",
                  "volcanic valley", "glacier", "lavender fields", "rice terraces", "autumn birch forest"),
        details=("reflections on the water", "low clouds", "winding river", "snow-capped peaks", "wildflowers in the foreground",
                 "long exposure water", "fog rolling over hills", "a lone tree"),
        settings=("at sunrise", "at dusk", "under the milky way", "after a storm", "in early spring", "in deep winter"),
        styles=("landscape photography", "National Geographic photo", "wide-angle shot", "aerial drone shot", "panorama"),
        lighting=("golden hour", "blue hour", "dramatic clouds", "god rays", "soft diffused light", "backlit"),
        extras=("16mm", "f/11", "ND filter", "HDR", "Nikon D850", "tack sharp", "8k uhd"),
        lora_style="photo",
        loras=("add_detail", "epi_noiseoffset2", "LowRA", "more_details"),
    ),
    "anime": FamilyVocab(
        subjects=("1girl, solo", "1boy, solo", "2girls", "magical girl", "samurai boy", "idol singer", "shrine maiden",
                  "girl with cat ears", "swordswoman", "student council president", "maid"),
        details=("long silver hair", "twintails", "heterochromia", "school uniform", "kimono", "hair ribbon", "looking at viewer",
                 "smile", "blush", "holding an umbrella", "cherry blossom petals"),
        settings=("classroom", "rooftop at sunset", "shrine courtyard", "city street at night", "summer festival",
                  "train station", "flower field"),
        styles=("anime style", "anime screencap", "cel shading", "official art", "key visual", "pixiv", "detailed anime illustration"),
        lighting=("soft lighting", "sunset glow", "lens flare", "dappled light", "sparkles"),
        extras=("beautiful detailed eyes", "highres", "absurdres", "vibrant colors", "depth of field"),
        lora_style="anime",
        loras=("animeoutlineV4_16", "ghibli_style_offset", "add_detail", "lineart"),
    ),
    "fantasy_illustration": FamilyVocab(
        subjects=("elven archer", "ancient red dragon", "wizard casting a spell", "knight in ornate armor", "floating castle",
                  "forest spirit", "dwarven forge", "griffin", "sorceress", "enchanted library", "phoenix"),
        details=("glowing runes", "flowing cape", "intricate armor", "magic particles", "ancient ruins", "crystal staff",
                 "ethereal mist", "giant mushrooms"),
        settings=("in an enchanted forest", "on a cliff above the clouds", "in a moonlit valley", "inside a crystal cave",
                  "over a medieval town", "in a misty swamp"),
        styles=("fantasy art", "digital painting", "concept art", "epic fantasy illustration", "artstation", "dnd character art",
                "by greg rutkowski", "by alphonse mucha"),
        lighting=("volumetric lighting", "magical glow", "dramatic lighting", "moonlight", "bioluminescent light"),
        extras=("highly detailed", "intricate", "trending on artstation", "matte painting", "epic composition"),
        lora_style="art",
        loras=("add_detail", "more_details", "fantasy_world_v1", "epi_noiseoffset2"),
    ),
    "oil_painting": FamilyVocab(
        subjects=("still life with pears", "harbor with sailing boats", "woman reading a letter", "village church",
                  "vase of sunflowers", "stormy sea", "country road with poplars", "old man playing violin",
                  "market square", "bouquet of peonies"),
        details=("visible brushstrokes", "thick impasto", "canvas texture", "muted palette", "warm earth tones",
                 "cracked varnish", "loose brushwork"),
        settings=("in the evening", "in summer", "by a window", "in a dutch interior", "on a hillside"),
        styles=("oil painting", "oil on canvas", "impressionism", "baroque painting", "by claude monet", "by rembrandt",
                "by vincent van gogh", "classical realism", "plein air painting"),
        lighting=("chiaroscuro", "soft diffused light", "warm candlelight", "afternoon sun"),
        extras=("museum quality", "fine art", "traditional media", "masterpiece painting"),
        lora_style="art",
        loras=("add_detail", "more_details", "oil_painting_style", "LowRA"),
    ),
    "render_3d": FamilyVocab(
        subjects=("cute robot", "chibi astronaut", "isometric tiny house", "toy fox", "blind box figure of a knight",
                  "low poly island", "cartoon mushroom house", "stylized sports car", "clay snail", "floating island diorama"),
        details=("glossy plastic", "soft pastel colors", "subsurface scattering", "smooth shading", "tiny details", "clay texture"),
        settings=("on a white background", "on a studio turntable", "in a miniature diorama", "on a pastel backdrop"),
        styles=("3d render", "octane render", "blender", "unreal engine 5", "pixar style", "c4d", "isometric 3d"),
        lighting=("studio lighting", "soft global illumination", "ambient occlusion", "three-point lighting"),
        extras=("ray tracing", "8k render", "physically based rendering", "cinema4d", "redshift render"),
        lora_style="3d",
        loras=("blindbox_v1_mix", "3DMM_V12", "add_detail", "ClayAnimationRedmond"),
    ),
    "scifi_cyberpunk": FamilyVocab(
        subjects=("cyberpunk street samurai", "android with exposed circuitry", "neon megacity", "hacker in a dark room",
                  "mech pilot", "flying car", "cyborg bartender", "space station corridor", "hovercraft chase",
                  "netrunner with VR visor"),
        details=("neon signs", "holographic ads", "chrome implants", "rain-soaked streets", "glowing tattoos", "smog",
                 "cables everywhere", "reflective puddles"),
        settings=("in night city", "in a neon alley", "on a megastructure rooftop", "in a dystopian future", "on a space colony"),
        styles=("cyberpunk", "sci-fi concept art", "blade runner aesthetic", "synthwave", "futuristic", "cyberpunk 2077 style"),
        lighting=("neon lighting", "pink and teal lighting", "volumetric fog", "backlit by holograms"),
        extras=("cinematic shot", "ultra wide", "anamorphic lens flare", "highly detailed", "dark atmosphere"),
        lora_style="art",
        loras=("CyberPunkAI", "add_detail", "epi_noiseoffset2", "more_details"),
    ),
    "architecture_interior": FamilyVocab(
        subjects=("scandinavian living room", "modern kitchen", "minimalist bedroom", "japandi bathroom", "loft apartment",
                  "brutalist villa", "glass house in the forest", "art deco hotel lobby", "cozy reading nook", "home office"),
        details=("oak floors", "large windows", "marble countertop", "indoor plants", "linen sofa", "concrete walls",
                 "pendant lamps", "floor-to-ceiling bookshelves"),
        settings=("in the morning", "with a lake view", "in a city penthouse", "in the mountains", "by the sea"),
        styles=("interior design photography", "architectural photography", "architectural visualization", "archviz",
                "magazine interior shot", "vray render"),
        lighting=("natural daylight", "warm ambient light", "soft shadows", "evening interior lights"),
        extras=("wide angle", "24mm tilt-shift", "symmetrical composition", "clean lines", "realistic materials"),
        lora_style="photo",
        loras=("add_detail", "more_details", "epi_noiseoffset2", "LowRA"),
    ),
    "cartoon_comic": FamilyVocab(
        subjects=("superhero landing", "talking cat detective", "grumpy wizard", "pirate parrot", "robot sidekick",
                  "villain laughing", "dog astronaut", "witch on a broom", "caveman with a club", "penguin chef"),
        details=("speech bubble", "action lines", "exaggerated expression", "bold outlines", "halftone dots", "flat colors"),
        settings=("in a comic panel", "in a cartoon city", "in a jungle", "on a pirate ship", "in outer space"),
        styles=("comic book style", "cartoon", "western comic art", "manga panel", "saturday morning cartoon", "pop art",
                "graphic novel illustration", "disney style"),
        lighting=("flat lighting", "dramatic comic shading", "bright colors"),
        extras=("ink lines", "vector art", "clean linework", "2d illustration"),
        lora_style="anime",
        loras=("animeoutlineV4_16", "lineart", "add_detail", "pop_art_style"),
    ),
    "food_product": FamilyVocab(
        subjects=("gourmet burger", "bowl of ramen", "chocolate cake slice", "sushi platter", "perfume bottle",
                  "luxury wristwatch", "sneaker", "cup of latte art", "stack of pancakes", "skincare bottle", "glass of red wine"),
        details=("water droplets", "steam rising", "melting cheese", "fresh herbs", "marble surface", "splash", "condensation"),
        settings=("on a wooden table", "on a white pedestal", "on a slate board", "in a minimal studio", "in a rustic kitchen"),
        styles=("food photography", "product photography", "commercial advertisement", "macro shot", "studio product shot"),
        lighting=("softbox lighting", "backlight", "natural window light", "high key lighting"),
        extras=("100mm macro", "f/2.8", "appetizing", "crisp details", "shallow depth of field", "commercial quality"),
        lora_style="photo",
        loras=("add_detail", "more_details", "epi_noiseoffset2", "FilmVelvia3"),
    ),
}

QUALITY_TAGS = ("masterpiece", "best quality", "ultra detailed", "8k", "high quality", "highres", "award winning")
NEGATIVE_TAGS = ("lowres", "bad anatomy", "bad hands", "worst quality", "low quality", "jpeg artifacts", "watermark",
                 "signature", "text", "blurry", "deformed", "extra fingers", "cropped", "out of frame", "ugly", "easynegative")
# fmt: on


def _lora_pool(family: str) -> list[tuple[str, float, float]]:
    """(name, weight_min, weight_max) LoRAs for a family: flowrl.comfy.components' of its style, else the fallback stems."""
    from flowrl.comfy.components import LORAS  # looked up per call, so a test can put a catalog in its place

    vocab = VOCAB[family]
    pool = [(l.name, l.weight_min, l.weight_max) for l in LORAS if l.style in (vocab.lora_style, "general")]
    return pool or [(name, 0.4, 1.0) for name in vocab.loras]


def _weighted(phrase: str, rng: random.Random) -> str:
    """Wrap a phrase in CivitAI attention syntax: (phrase:1.2), ((phrase)) or (phrase)."""
    kind = rng.random()
    if kind < 0.7:
        return f"({phrase}:{rng.choice((0.8, 0.9, 1.1, 1.2, 1.3, 1.4))})"
    return f"(({phrase}))" if kind < 0.85 else f"({phrase})"


def generate_one(family: str, rng: random.Random, loras: list[tuple[str, float, float]] | None = None) -> dict:
    """One prompt row {"prompt", "negative_prompt", "family"} of the given family."""
    v = VOCAB[family]
    parts = []
    if rng.random() < 0.75:
        parts += rng.sample(QUALITY_TAGS, rng.randint(1, 4))
    parts.append(rng.choice(v.subjects))
    parts += rng.sample(v.details, rng.randint(1, 3))
    if rng.random() < 0.8:
        parts.append(rng.choice(v.settings))
    parts += rng.sample(v.styles, rng.randint(1, 2))
    parts.append(rng.choice(v.lighting))
    parts += rng.sample(v.extras, rng.randint(1, 3))
    parts = list(dict.fromkeys(parts))  # a quality tag may repeat an extra
    for _ in range(rng.choice((0, 1, 1, 2))):  # attention weights on one or two non-subject parts
        i = rng.randrange(1, len(parts))
        if not parts[i].startswith("("):
            parts[i] = _weighted(parts[i], rng)
    if rng.random() < 0.35:
        name, lo, hi = rng.choice(loras or _lora_pool(family))
        parts.append(f"<lora:{name}:{round(rng.uniform(lo, hi), 1)}>")
    negative = ", ".join(rng.sample(NEGATIVE_TAGS, rng.randint(3, 8))) if rng.random() < 0.5 else None
    return {"prompt": ", ".join(parts), "negative_prompt": negative, "family": family}


def generate_prompts(n: int, seed: int) -> list[dict]:
    """`n` distinct prompts (by the cleaning match key), families in turn so each gets n/10.

    Args:
        n: how many prompts.
        seed: same seed, same prompts (a private random.Random; no global state).
    Returns:
        rows {"prompt", "negative_prompt", "family", "source": "generator"}.
    """
    rng = random.Random(seed)
    pools = {family: _lora_pool(family) for family in FAMILIES}
    rows: list[dict] = []
    seen: set[str] = set()
    attempts = 0
    with tqdm(total=n, desc="generating prompts", unit="prompt", disable=n < 2000) as bar:
        while len(rows) < n:
            attempts += 1
            if attempts > 50 * n + 1000:
                raise RuntimeError(f"generator produced only {len(rows)} distinct prompts out of {n}; widen VOCAB")
            family = FAMILIES[len(rows) % len(FAMILIES)]
            row = generate_one(family, rng, pools[family])
            key = dedupe_key(row["prompt"])
            if key in seen:
                continue
            seen.add(key)
            rows.append({**row, "source": "generator"})
            bar.update()
    return rows
