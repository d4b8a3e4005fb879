"""Small hand-written API graphs for the scoring tests."""

from __future__ import annotations


def simple_flow(
    ckpt: str = "dreamshaper_8.safetensors",
    steps: int = 25,
    cfg: float = 7.0,
    sampler: str = "dpmpp_2m",
    scheduler: str = "karras",
    width: int = 512,
    height: int = 768,
    lora: tuple[str, float] | None = None,
    seed: int = 1,
) -> dict:
    """checkpoint [-> LoRA] -> prompts -> empty latent -> KSampler -> VAEDecode -> SaveImage."""
    g = {
        "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt}},
        "2": {"class_type": "CLIPTextEncode", "inputs": {"text": "<prompt>", "clip": ["1", 1]}},
        "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry, low quality", "clip": ["1", 1]}},
        "4": {"class_type": "EmptyLatentImage", "inputs": {"width": width, "height": height, "batch_size": 1}},
        "5": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["1", 0],
                "positive": ["2", 0],
                "negative": ["3", 0],
                "latent_image": ["4", 0],
                "seed": seed,
                "steps": steps,
                "cfg": cfg,
                "sampler_name": sampler,
                "scheduler": scheduler,
                "denoise": 1.0,
            },
        },
        "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
        "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "flowrl"}},
    }
    if lora is not None:
        g["8"] = {
            "class_type": "LoraLoader",
            "inputs": {
                "model": ["1", 0],
                "clip": ["1", 1],
                "lora_name": lora[0],
                "strength_model": lora[1],
                "strength_clip": lora[1],
            },
        }
        g["5"]["inputs"]["model"] = ["8", 0]
        g["2"]["inputs"]["clip"] = ["8", 1]
        g["3"]["inputs"]["clip"] = ["8", 1]
    return g
