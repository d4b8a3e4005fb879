"""A small byte-level BPE tokenizer trained on the pipeline's own prompts and flows (policy.source: scratch).

A general tokenizer spends most of a from-scratch model's compute on its 49k-row output layer and
splits numbers and file names into many pieces. Trained on the SFT corpus, 2-4k merges cover the
prompt words and the flow's common values (sizes, step counts, cfg values) as single tokens; the
flow vocabulary (class types, `name=`, model files) is added on top as whole tokens, as for every
other source (`flowrl.encoding.vocab.extend_tokenizer`).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from flowrl.errors import FlowRLError

EOS = "<|endoftext|>"


class TokenizerTrainingError(FlowRLError):
    """The corpus for a scratch tokenizer is empty."""


def train_bpe_tokenizer(corpus: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE with `vocab_size` entries (EOS included) trained on `corpus`; EOS doubles as padding.

    Deterministic for a given corpus order and size.
    """
    texts = [t for t in corpus if t]
    if not texts:
        raise TokenizerTrainingError(
            "no text to train the policy tokenizer on; rerun the encode stage (dvc repro encode)"
        )
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=EOS, clean_up_tokenization_spaces=False
    )
