"""Load the reward tokenizer and build a fresh surrogate (encoder + regression head on CLS).

The surrogate is `AutoModelForSequenceClassification(num_labels=1, problem_type="regression")`:
the encoder's CLS vector goes through the architecture's own pooler/classifier head into one
score, and its loss is MSE (paper eq. 1). Only `source: hub` may reach a model hub.
"""

from __future__ import annotations

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    BertForSequenceClassification,
    PreTrainedModel,
)
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from flowrl.model_configs import build_random_model
from flowrl.params.model import RewardConfig
from flowrl.reward.encoder_source import RewardLoadError as RewardLoadError  # re-exported: raised by the loaders here
from flowrl.reward.encoder_source import encoder_name_and_kwargs
from flowrl.reward.encoder_source import minilm_path as minilm_path  # re-exported

SPEC_FILE = "ensemble.json"  # a saved ensemble's spec (flowrl.reward.ensemble, flowrl.reward.head)


def load_reward_tokenizer(cfg: RewardConfig) -> PreTrainedTokenizerBase:
    """Tokenizer of the configured encoder (MiniLM's for tiny and random)."""
    name, kwargs = encoder_name_and_kwargs(cfg)
    try:
        tokenizer = AutoTokenizer.from_pretrained(name, **kwargs)
    except (OSError, ValueError) as exc:
        raise RewardLoadError(f"tokenizer for reward.source={cfg.source} ({name}) could not be loaded: {exc}") from None
    if cfg.source == "random":  # BERT's segment ids would reach encoders without them (ModernBERT)
        tokenizer.model_input_names = ["input_ids", "attention_mask"]
    return tokenizer


def build_surrogate(cfg: RewardConfig, vocab_size: int, seed: int) -> PreTrainedModel:
    """A fresh surrogate: pretrained encoder (random for tiny) + a new 1-output regression head.

    Args:
        cfg: the `reward` params section.
        vocab_size: tokenizer length (embeddings are resized to it, e.g. after adding flow tokens).
        seed: seeds the head (and the tiny encoder) so each ensemble member starts differently.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if cfg.source == "tiny":
            config = BertConfig(vocab_size=vocab_size, num_labels=1, problem_type="regression", **cfg.tiny.model_dump())
            return BertForSequenceClassification(config)
        if cfg.source == "random":  # real shapes, random weights, no hub (flowrl/model_configs)
            model = build_random_model(cfg.model, "regression", seed, setting="reward.model")
        else:
            name, kwargs = encoder_name_and_kwargs(cfg)
            try:
                model = AutoModelForSequenceClassification.from_pretrained(
                    name, num_labels=1, problem_type="regression", dtype=torch.float32, **kwargs
                )
            except (OSError, ValueError) as exc:
                raise RewardLoadError(
                    f"encoder for reward.source={cfg.source} ({name}) could not be loaded: {exc}"
                ) from None
        if model.get_input_embeddings().num_embeddings < vocab_size:
            model.resize_token_embeddings(vocab_size, mean_resizing=False)
        return model
