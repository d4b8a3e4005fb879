"""The flow vocabulary: whole tokens for class types, input names, node references and model names.

Each token is taken from the text the codec writes, so it always matches inside encoded flows.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from flowrl.comfy.graph import PROMPT_PLACEHOLDER
from flowrl.encoding.codec import LINK_MARK, encode_flow
from flowrl.encoding.schema import Schema

# Fields whose string values are component choices (models, LoRAs, samplers...) worth one token each.
VOCAB_FIELDS = frozenset(
    {
        "ckpt_name",
        "lora_name",
        "sampler_name",
        "scheduler",
        "vae_name",
        "model_name",
        "unet_name",
        "clip_name",
        "clip_name1",
        "clip_name2",
        "clip_name3",
        "control_net_name",
        "upscale_model",
        "upscale_method",
        "style_model_name",
        "gligen_name",
        "hypernetwork_name",
        "embedding_name",
    }
)


def _rendered_line(class_type: str, name: str | None = None) -> str:
    """The encoded line of a node holding one input `name` (to read how the codec writes names)."""
    return encode_flow({"1": {"class_type": class_type, "inputs": {name: 0} if name is not None else {}}})


def class_token(class_type: str) -> str:
    """The token for a class type: the text the codec writes at the start of the line."""
    return _rendered_line(class_type)


def name_token(name: str) -> str:
    """The token for an input name, with the space before it and the `=` after it (e.g. ' steps=').

    The leading space is part of the token because the base tokenizer would otherwise spend one
    token on the space before every input (an added token splits the text around it).
    """
    line = _rendered_line("X", name)
    return line[1 : line.rindex("=") + 1]


def value_token(value: str) -> str:
    """The token for a string value: its text as written in a line, without surrounding quotes."""
    written = encode_flow({"1": {"class_type": "X", "inputs": {"v": value}}})[len("X v=") :]
    return written[1:-1] if written.startswith('"') else written


def flow_tokens(schema: Schema) -> list[str]:
    """The flow vocabulary of a schema, sorted and deduplicated.

    Tokens: each class type, each input name as ' name=', node references '@1'..'@n' for the
    largest graph seen, the string values seen for the component fields in VOCAB_FIELDS, and the
    prompt placeholder of library flows.
    """
    tokens: set[str] = {PROMPT_PLACEHOLDER}
    for class_type, stats in schema.classes.items():
        tokens.add(class_token(class_type))
        for name, f in stats.fields.items():
            tokens.add(name_token(name))
            if name in VOCAB_FIELDS:
                tokens.update(value_token(v) for v in f.vocab if v.strip())
    tokens.update(f"{LINK_MARK}{k}" for k in range(1, schema.max_nodes + 1))
    return sorted(tokens)


def token_pieces(tokenizer, tokens: Sequence[str]) -> dict[str, list[int]]:
    """The ids `tokenizer` splits each of `tokens` not yet in its vocabulary into (call before adding them)."""
    existing = tokenizer.get_vocab()
    return {t: tokenizer.encode(t, add_special_tokens=False) for t in dict.fromkeys(tokens) if t not in existing}


def init_from_pieces(model, tokenizer, pieces: dict[str, list[int]]) -> None:
    """Resize `model`'s embeddings to `len(tokenizer)`; each token of `pieces` gets the mean row of its pieces.

    Input and (untied) output embeddings alike; a token whose text has no piece gets the mean of all rows.
    """
    old = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > old:
        model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    with torch.no_grad():
        for emb in {
            id(e): e for e in (model.get_input_embeddings(), model.get_output_embeddings()) if e is not None
        }.values():
            mean = emb.weight[:old].mean(dim=0)
            for token, ids in pieces.items():
                ids = [i for i in ids if i < old]
                emb.weight[tokenizer.convert_tokens_to_ids(token)] = emb.weight[ids].mean(dim=0) if ids else mean


def extend_tokenizer(tokenizer, tokens: Sequence[str], model=None) -> int:
    """Add `tokens` as normal (non-special) added tokens; resize `model`'s embeddings to match.

    Non-special on purpose: `decode(..., skip_special_tokens=True)` drops special tokens, which
    would delete class types and input names from decoded flows. A new token's embedding row (and
    output row when untied) starts as the mean of the rows of the pieces the base tokenizer split
    its text into (`KSampler` -> `K`, `Sampler`; `init_from_pieces`), so the model starts from what
    it knows of the text: SmolLM2-135M's held-out flow perplexity before training is 236 this way,
    3,345 with every new row at the mean of all rows (docs/encoding.md).

    Args:
        tokenizer: a Hugging Face tokenizer (changed in place).
        tokens: the flow vocabulary (`flow_tokens(schema)`).
        model: optional PreTrainedModel whose embeddings are resized to len(tokenizer).
    Returns:
        How many tokens were new to the tokenizer.
    """
    from tokenizers import AddedToken

    pieces = token_pieces(tokenizer, tokens)
    added = tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in pieces])
    if model is not None:
        init_from_pieces(model, tokenizer, pieces)
    return added
