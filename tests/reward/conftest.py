"""Synthetic triplets a surrogate can learn: the score depends on a flow token and a prompt word."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from flowrl.io import write_jsonl
from flowrl.params.model import resolve

STYLES = ("anime", "photo")
SAMPLERS = ("euler", "dpmpp_2m", "ddim")


def synthetic_flow(ckpt: str, sampler: str, steps: int) -> str:
    """A small encoded flow (as encode_flow writes it), one component per line."""
    return (
        f"CheckpointLoaderSimple ckpt_name={ckpt}_model.safetensors\nEmptyLatentImage width=1024 height=1024 batch_size=1\n"
        f"KSampler latent_image=@2 model=@1 seed=7 steps={steps} cfg=7.0 sampler_name={sampler} scheduler=normal denoise=1.0\n"
        "SaveImage images=@3 filename_prefix=x"
    )


def synthetic_score(prompt_style: str, ckpt: str, sampler: str, rng: random.Random) -> float:
    """High when the checkpoint matches the prompt's style; the sampler adds a little; plus noise."""
    return (0.6 if prompt_style == ckpt else 0.0) + 0.1 * SAMPLERS.index(sampler) + rng.gauss(0, 0.03)


def make_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        style, ckpt, sampler = rng.choice(STYLES), rng.choice(STYLES), rng.choice(SAMPLERS)
        flow = synthetic_flow(ckpt, sampler, rng.choice((20, 30)))
        rows.append(
            {
                "prompt": f"a {style} picture of a cat",
                "flow_id": f"{ckpt}-{sampler}",
                "flow": flow,
                "flow_split": "seen",
                "score": synthetic_score(style, ckpt, sampler, rng),
            }
        )
    return rows


def write_triplets(root: Path, n_train: int = 320, n_test: int = 80, seed: int = 0) -> Path:
    """Write data/triplets/{train,val,test}.jsonl and data/encode/flows.jsonl under `root`."""
    write_jsonl(root / "data/triplets/train.jsonl", make_rows(n_train, seed))
    write_jsonl(root / "data/triplets/val.jsonl", make_rows(n_test // 2, seed + 1))
    write_jsonl(root / "data/triplets/test.jsonl", make_rows(n_test, seed + 2))
    unscored = [
        {"id": f"u{i}", "text": synthetic_flow("pixelart", "lms", 99) + f"\nUpscaleModelLoader model_name=x{i}.pth"}
        for i in range(10)
    ]
    write_jsonl(root / "data/encode/flows.jsonl", unscored)
    return root


@pytest.fixture
def tiny_params():
    """Tiny-profile params (head members) with the reward section small enough for a few-second test."""
    return resolve(
        {
            "reward": {
                "member": "head",
                "source": "tiny",
                "bf16": False,
                "n_models": 3,
                "n_prefix_models": 1,
                "n_prefixes": 2,
                "head": {"epochs": 30, "batch_size": 32, "hidden": [32, 24], "learning_rate": 3e-3},
                "n_unscored": 20,
                "n_perturbed": 30,
                "tau_quantile": 0.9,
            }
        },
        profile="tiny",
    )


@pytest.fixture
def finetune_params():
    """Tiny-profile params with fine-tuned members (random small BERT), small enough for a few-second test."""
    return resolve(
        {
            "reward": {
                "member": "finetune",
                "source": "tiny",
                "bf16": False,
                "add_flow_tokens": False,
                "n_models": 3,
                "n_prefix_models": 1,
                "n_prefixes": 2,
                "epochs": 3,
                "batch_size": 16,
                "learning_rate": 1e-3,
                "max_length": 128,
                "n_unscored": 20,
                "n_perturbed": 30,
            }
        },
        profile="tiny",
    )


@pytest.fixture
def triplet_root(tmp_path: Path) -> Path:
    return write_triplets(tmp_path)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread; two OpenMP threads spin badly when the 2 cores are shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
