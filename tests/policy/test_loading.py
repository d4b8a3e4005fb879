"""Loading the policy LM from each source, offline, and extending it with the flow vocabulary."""

from __future__ import annotations

import pytest
import torch

from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.codec import encode_flow
from flowrl.encoding.report import smollm2_gguf_path
from flowrl.encoding.schema import infer_schema
from flowrl.encoding.vocab import flow_tokens
from flowrl.params.model import PolicyConfig
from flowrl.policy.loading import PolicyLoadError, build_tiny_model, load_base_model, load_policy, load_tokenizer


@pytest.fixture(scope="module")
def smollm2():
    """SmolLM2-135M-Instruct dequantized from the packaged GGUF (~15 s, once per module)."""
    cfg = PolicyConfig(source="gguf")
    tokenizer = load_tokenizer(cfg)
    return load_base_model(cfg, len(tokenizer)).eval(), tokenizer


def test_gguf_smollm2_loads_and_knows_english(smollm2):
    model, tok = smollm2
    assert smollm2_gguf_path().suffix == ".gguf"
    assert model.config.num_hidden_layers == 30 and model.dtype == torch.float32
    enc = tok("The capital of France is", return_tensors="pt")
    out = model.generate(**enc, do_sample=False, max_new_tokens=3, pad_token_id=tok.pad_token_id)
    assert "Paris" in tok.decode(out[0, enc.input_ids.shape[1] :])  # dequantization kept the weights' meaning


def test_tiny_model_is_reproducible_from_its_seed(tiny_params):
    a, b, c = (build_tiny_model(tiny_params.policy, 1000, seed) for seed in (7, 7, 8))
    assert a.config.hidden_size == tiny_params.policy.tiny.hidden_size
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


def test_dir_source_round_trip(tiny_params, base_tokenizer, tmp_path):
    model = build_tiny_model(tiny_params.policy, len(base_tokenizer), seed=1)
    model.save_pretrained(tmp_path)  # safetensors
    base_tokenizer.save_pretrained(tmp_path)
    assert list(tmp_path.glob("*.safetensors"))
    cfg = PolicyConfig(source="dir", model=str(tmp_path))
    loaded = load_base_model(cfg, 0)
    assert len(load_tokenizer(cfg)) == len(base_tokenizer)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        (PolicyConfig(source="dir", model="/nonexistent/model"), "no config.json"),
        (PolicyConfig(source="gguf", model="/nonexistent/x.gguf"), "does not exist"),
    ],
)
def test_bad_local_sources_say_what_to_fix(cfg, needle):
    with pytest.raises(PolicyLoadError, match=needle):
        load_base_model(cfg, 0)


def test_hub_or_dir_source_needs_a_model_name():
    with pytest.raises(ValueError, match="policy.model is empty"):
        PolicyConfig(source="hub")


def test_flow_tokens_are_single_ids_and_embeddings_resized(tiny_params):
    graphs = [graph for _, graph in load_base_flows()[:6]]
    tokens = flow_tokens(infer_schema(graphs))
    model, tok = load_policy(tiny_params.policy, tokens, seed=0)
    assert model.get_input_embeddings().weight.shape[0] == len(tok) > 49152
    ids = [tok(t, add_special_tokens=False).input_ids for t in tokens]
    assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == len(tokens)
    text = encode_flow(graphs[0])
    assert tok.decode(tok(text, add_special_tokens=False).input_ids) == text
