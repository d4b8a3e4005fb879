"""Load the policy LM (tiny random Llama, GGUF file, local folder or hub id) and its tokenizer.

Only `source: hub` may reach a model hub; every other source loads with `local_files_only=True`
inside `hub_offline()` (the hub libraries' offline switches), and adapters always load offline.
A trained policy folder (models/sft) holds the adapter, the extended tokenizer and `policy.json`,
which names the base model so it can be rebuilt exactly.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from flowrl.encoding.report import load_smollm2_tokenizer, smollm2_gguf_path  # the packaged SmolLM2
from flowrl.encoding.vocab import extend_tokenizer
from flowrl.errors import FlowRLError
from flowrl.io import read_json, write_json
from flowrl.model_configs import build_random_model
from flowrl.params.model import PolicyConfig
from flowrl.runtime.device import Placement, load_kwargs, place, placement

SPEC_FILE = "policy.json"
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"
OFFLINE_ENV = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")


class PolicyLoadError(FlowRLError):
    """A policy model, tokenizer or trained policy folder could not be loaded."""


@contextmanager
def hub_offline(offline: bool = True) -> Iterator[None]:
    """Within the block, huggingface_hub, transformers and peft make no network request (a missing file
    fails at once instead of a download attempt); the previous switches come back afterwards."""
    if not offline:
        yield
        return
    import huggingface_hub.constants as hub_constants

    saved_env = {k: os.environ.get(k) for k in OFFLINE_ENV}
    saved_flag = hub_constants.HF_HUB_OFFLINE
    os.environ.update(dict.fromkeys(OFFLINE_ENV, "1"))
    hub_constants.HF_HUB_OFFLINE = True  # read at call time by huggingface_hub and peft
    try:
        yield
    finally:
        hub_constants.HF_HUB_OFFLINE = saved_flag
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _why(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def check_adapter_folder(folder: str | Path) -> Path:
    """Fail fast, naming the file and the fix, unless `folder` holds a readable LoRA adapter
    (adapter_config.json as a JSON object, adapter_model.safetensors with a valid header)."""
    from safetensors import safe_open

    folder = Path(folder)
    retrain = "restore the folder or retrain (dvc repro sft / grpo)"
    config, weights = folder / ADAPTER_CONFIG, folder / ADAPTER_WEIGHTS
    if not config.is_file() or not weights.is_file():
        missing = ", ".join(p.name for p in (config, weights) if not p.is_file())
        raise PolicyLoadError(f"{folder}: adapter file(s) missing ({missing}); {retrain}")
    try:
        ok = isinstance(json.loads(config.read_text(encoding="utf-8")), dict)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        ok = False
    if not ok:
        raise PolicyLoadError(f"{config}: not a JSON object of adapter settings; {retrain}")
    try:
        with safe_open(str(weights), framework="pt"):
            pass
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise PolicyLoadError(f"{weights}: not a readable safetensors file ({_why(exc)}); {retrain}") from None
    return folder


def load_adapter(base: PreTrainedModel, folder: str | Path, adapter_name: str):
    """Attach the LoRA adapter saved in `folder` to `base` (checked first, loaded offline).

    Returns:
        PeftModel holding the adapter as `adapter_name`.
    """
    from peft import PeftModel

    check_adapter_folder(folder)
    try:
        with hub_offline():
            return PeftModel.from_pretrained(base, str(folder), adapter_name=adapter_name, local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise PolicyLoadError(
            f"{folder}: adapter could not be loaded ({_why(exc)}); "
            "it does not fit its base model or is damaged: restore the folder or retrain"
        ) from None


def _gguf_file(cfg: PolicyConfig) -> Path:
    path = Path(cfg.model) if cfg.model else smollm2_gguf_path()
    if not path.is_file():
        raise PolicyLoadError(
            f"policy.model: GGUF file {path} does not exist; fix the path or leave it empty for SmolLM2"
        )
    return path


def _source_kwargs(cfg: PolicyConfig) -> tuple[str, dict[str, Any]]:
    """(name_or_path, from_pretrained kwargs) for the configured source; tiny uses SmolLM2's tokenizer."""
    if cfg.source in ("gguf", "tiny"):
        gguf = _gguf_file(cfg) if cfg.source == "gguf" else smollm2_gguf_path()
        return str(gguf.parent), {"gguf_file": gguf.name, "local_files_only": True}
    if cfg.source == "dir":
        folder = Path(cfg.model)
        if not (folder / "config.json").exists():
            raise PolicyLoadError(f"policy.model: {folder} is not a model folder (no config.json); fix the path")
        return str(folder), {"local_files_only": True}
    return str(cfg.model), {}  # hub: the only source allowed to download


def load_tokenizer(cfg: PolicyConfig, corpus: Sequence[str] = ()) -> PreTrainedTokenizerBase:
    """Load the base tokenizer of the configured model (a private copy); pad falls back to EOS.

    Args:
        corpus: texts a `scratch` tokenizer is trained on (the SFT prompts and flows); unused otherwise.
    """
    if cfg.source == "scratch":
        from flowrl.policy.flow_tokenizer import train_bpe_tokenizer

        return train_bpe_tokenizer(corpus, cfg.scratch.vocab_size)
    name, kwargs = _source_kwargs(cfg)
    try:
        with hub_offline(cfg.source != "hub"):
            if cfg.source in ("tiny", "random") or (cfg.source == "gguf" and not cfg.model):
                tokenizer = load_smollm2_tokenizer()  # SmolLM2's: its slow GGUF read is cached per process
            else:
                tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise PolicyLoadError(f"tokenizer for policy.source={cfg.source} ({name}) could not be loaded: {exc}") from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def build_tiny_model(cfg: PolicyConfig, vocab_size: int, seed: int) -> LlamaForCausalLM:
    """A randomly initialised small Llama (sizes from `cfg.tiny`, or `cfg.scratch` for source=scratch); same inputs, same weights."""
    sizes = cfg.scratch.model_dump(exclude={"vocab_size"}) if cfg.source == "scratch" else cfg.tiny.model_dump()
    config = LlamaConfig(vocab_size=vocab_size, tie_word_embeddings=True, **sizes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config)


def load_base_model(
    cfg: PolicyConfig, vocab_size: int, seed: int = 0, where: Placement | None = None
) -> PreTrainedModel:
    """Load (or build, for tiny, scratch and random) the base causal LM: fp32 on the CPU, or on `where`.

    Args:
        cfg: the `policy` params section.
        vocab_size: base tokenizer size, used by the tiny model.
        seed: initialisation seed of the tiny model.
        where: device and weight dtype (flowrl.runtime.device.placement); None or the CPU: fp32 where it was built.
    """
    if cfg.source in ("tiny", "scratch"):
        return (
            place(build_tiny_model(cfg, vocab_size, seed), where) if where else build_tiny_model(cfg, vocab_size, seed)
        )
    if cfg.source == "random":  # real shapes, random weights, no hub (flowrl/model_configs)
        if where is not None and where.moves:  # built on the device in its dtype: no fp32 copy of 8B weights on the CPU
            return build_random_model(cfg.model, "causal-lm", seed, device=where.device, dtype=where.dtype)
        return build_random_model(cfg.model, "causal-lm", seed)
    name, kwargs = _source_kwargs(cfg)
    try:
        with hub_offline(cfg.source != "hub"):
            model = AutoModelForCausalLM.from_pretrained(name, **load_kwargs(where), **kwargs)
    except (OSError, ValueError) as exc:
        raise PolicyLoadError(f"model for policy.source={cfg.source} ({name}) could not be loaded: {exc}") from None
    if cfg.source == "gguf":
        # transformers dequantizes GGUF to plain fp32 tensors but keeps the quantizer tag, which
        # makes Trainer refuse to train; the weights are ordinary now, so drop the tag
        model.hf_quantizer, model.is_quantized, model.quantization_method = None, False, None
        model.config.__dict__.pop("quantization_config", None)
    model.config.use_cache = True
    return model


def load_policy(
    cfg: PolicyConfig, tokens: list[str], seed: int = 0, corpus: Sequence[str] = (), where: Placement | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Base model (on `where`, see load_base_model) and tokenizer extended with the flow tokens `tokens` (embeddings
    resized); `corpus` trains a scratch tokenizer."""
    tokenizer = load_tokenizer(cfg, corpus)
    model = load_base_model(cfg, len(tokenizer), seed, where)
    extend_tokenizer(tokenizer, tokens, model)
    return model, tokenizer


def save_policy_spec(folder: str | Path, cfg: PolicyConfig, seed: int, base_vocab_size: int, **extra: Any) -> Path:
    """Write `policy.json` (base model spec, seed, base vocabulary size, `extra`) next to a saved adapter."""
    spec = {"policy": cfg.model_dump(mode="json"), "seed": seed, "base_vocab_size": base_vocab_size, **extra}
    return write_json(Path(folder) / SPEC_FILE, spec)


def read_policy_spec(folder: str | Path) -> tuple[PolicyConfig, int, dict]:
    """Read `policy.json` from a trained policy folder: (policy config, seed, whole spec)."""
    path = Path(folder) / SPEC_FILE
    if not path.exists():
        raise PolicyLoadError(
            f"{folder}: no {SPEC_FILE}, so not a trained policy folder; run the sft stage (dvc repro sft)"
        )
    try:
        spec = read_json(path)
    except FlowRLError as exc:
        raise PolicyLoadError(f"{exc}; restore the folder or retrain (dvc repro sft)") from None
    try:
        int(spec["base_vocab_size"])
        return PolicyConfig.model_validate(spec["policy"]), int(spec["seed"]), spec
    except (KeyError, TypeError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        raise PolicyLoadError(
            f"{path}: not a policy spec written by the sft stage ({_why(exc)}); "
            "restore the folder or retrain (dvc repro sft)"
        ) from None


def load_sft_policy(folder: str | Path, adapter_name: str = "sft", where: Placement | str | None = None):
    """Rebuild the base model and attach the SFT adapter saved in `folder` under `adapter_name`.

    Args:
        where: device (and frozen-weight dtype) to load onto; None: the `device` setting in force (flowrl.runtime.device),
            which on a machine without CUDA is the CPU in fp32 (nothing moves).
    Returns:
        (PeftModel in eval mode, extended tokenizer).
    """
    cfg, seed, spec = read_policy_spec(folder)
    where = where if isinstance(where, Placement) else placement(where)
    if not spec.get("full_weights"):
        check_adapter_folder(folder)  # before the (slow) base model: a damaged folder fails at once
    try:
        with hub_offline():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - tokenizers raises plain Exception for a damaged tokenizer.json
        raise PolicyLoadError(
            f"{folder}: the saved tokenizer could not be loaded ({_why(exc)}); "
            "restore the folder or retrain (dvc repro sft)"
        ) from None
    if spec.get("full_weights"):  # source=scratch: every weight was trained and saved, no adapter
        try:
            with hub_offline():
                model = AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, **load_kwargs(where))
        except (OSError, ValueError, SafetensorError) as exc:
            raise PolicyLoadError(
                f"{folder}: the trained policy weights could not be loaded ({exc}); rerun the sft stage (dvc repro sft)"
            ) from None
        return model.eval(), tokenizer
    base = load_base_model(cfg, int(spec["base_vocab_size"]), seed, where)
    base.resize_token_embeddings(
        len(tokenizer), mean_resizing=False
    )  # rows come from the adapter (full copies or new rows)
    return load_adapter(base, folder, adapter_name).eval(), tokenizer


def load_sft_merged(folder: str | Path, where: Placement | str | None = None):
    """The SFT policy with its adapter merged into the weights: the base of GRPO and of guided sampling.

    Returns:
        (plain PreTrainedModel in eval mode, extended tokenizer).
    """
    model, tokenizer = load_sft_policy(folder, where=where)
    return (model.merge_and_unload() if hasattr(model, "merge_and_unload") else model).eval(), tokenizer
