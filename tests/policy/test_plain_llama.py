"""The plain-torch Llama (flowrl.policy.plain_llama) computes transformers' logits, merges a LoRA as peft does,
refuses what it does not cover, and carries `flowrl generate` without importing transformers."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from flowrl.policy import sft
from flowrl.policy.inference import FlowPolicy, ServingSettings
from flowrl.policy.plain_llama import PlainLlama, plain_llama_problem, plain_policy_problem
from tests.policy.test_cpu_default_path import scratch  # noqa: F401 - a fixture
from tests.policy.test_sft import flows  # noqa: F401 - a fixture used by `scratch`


def random_llama(folder, tie: bool = True, kv_heads: int = 2) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        tie_word_embeddings=tie,
        rms_norm_eps=1e-5,
    )
    model = LlamaForCausalLM(config).eval()
    model.save_pretrained(folder)
    return model


def left_padded() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    ids = torch.tensor([[0, 0, 0, 5, 6, 7], [1, 2, 3, 4, 5, 6]])
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    return ids, mask, (mask.cumsum(-1) - 1).clamp(min=0)


def assert_same_logits(reference, plain, atol: float = 1e-5) -> None:
    """Prefill on a left-padded batch (real positions), then three KV-cached steps."""
    ids, mask, pos = left_padded()
    with torch.no_grad():
        ref = reference(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        out = plain(ids, mask, pos)
        torch.testing.assert_close(out.logits[mask.bool()], ref.logits[mask.bool()], atol=atol, rtol=1e-4)
        ref_past, past = ref.past_key_values, out.past_key_values
        for token in (9, 11, 13):
            step = torch.full((2, 1), token)
            mask = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
            pos = pos[:, -1:] + 1
            ref = reference(
                input_ids=step,
                attention_mask=mask,
                position_ids=pos,
                past_key_values=ref_past,
                use_cache=True,
                logits_to_keep=1,
            )
            out = plain(step, mask, pos, past, logits_to_keep=1)
            torch.testing.assert_close(out.logits[:, -1], ref.logits[:, -1], atol=atol, rtol=1e-4)
            ref_past, past = ref.past_key_values, out.past_key_values


@pytest.mark.parametrize("tie, kv_heads", [(True, 2), (False, 4)])
def test_plain_llama_gives_the_logits_of_transformers(tmp_path, tie, kv_heads):
    reference = random_llama(tmp_path, tie, kv_heads)
    assert plain_llama_problem(tmp_path) is None
    assert_same_logits(reference, PlainLlama.from_folder(tmp_path))


def test_a_merged_lora_gives_the_logits_of_the_peft_model(tmp_path):
    base = random_llama(tmp_path / "base")
    lora = LoraConfig(
        r=4, lora_alpha=8, target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    )
    model = get_peft_model(base, lora)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)  # a trained adapter: B is no longer zero
    model.save_pretrained(tmp_path / "adapter")
    model.eval()
    plain = PlainLlama.from_folder(tmp_path / "base", tmp_path / "adapter")
    assert_same_logits(model, plain)
    with torch.no_grad():  # the adapter changes the logits: the merge is not a no-op
        ids, mask, pos = left_padded()
        unmerged = PlainLlama.from_folder(tmp_path / "base")(ids, mask, pos).logits
        assert (plain(ids, mask, pos).logits - unmerged).abs().max() > 1e-2


def test_what_the_plain_llama_does_not_cover_is_named(tmp_path):
    random_llama(tmp_path / "m")
    config = json.loads((tmp_path / "m/config.json").read_text())
    config["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0}
    config.pop("rope_parameters", None)
    (tmp_path / "m/config.json").write_text(json.dumps(config))
    assert "RoPE scaling" in plain_llama_problem(tmp_path / "m")
    assert "no config.json + model.safetensors" in plain_llama_problem(tmp_path)
    random_llama(tmp_path / "base")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "use_dora": True}))
    assert "not a plain LoRA" in plain_llama_problem(tmp_path / "base", adapter)


def test_flow_policy_samples_the_scratch_policy_in_plain_torch_as_transformers_does(scratch, monkeypatch):  # noqa: F811
    root, params, _ = scratch
    folder = root / sft.OUT_DIR
    assert plain_policy_problem(folder, None) is None
    settings = ServingSettings(max_new_tokens=48, usable_retries=0, bf16=False)
    threads = torch.get_num_threads()
    try:
        plain = FlowPolicy(folder, None, settings)
        assert plain.plain is not None
        flows = [r["flow"] for r in plain.generate(["a red fox", "a castle at dawn"], seed=3)]
        monkeypatch.setattr("flowrl.policy.plain_llama.plain_policy_problem", lambda *a: "forced")
        reference = FlowPolicy(folder, None, settings)
        assert reference.plain is None
        assert [r["flow"] for r in reference.generate(["a red fox", "a castle at dawn"], seed=3)] == flows
    finally:
        torch.set_num_threads(threads)


def test_generating_from_a_scratch_policy_imports_no_transformers(scratch):  # noqa: F811
    root, _, _ = scratch
    code = (
        "import sys\n"
        "from flowrl.policy.inference import FlowPolicy, ServingSettings\n"
        f"p = FlowPolicy({str(root / sft.OUT_DIR)!r}, None, ServingSettings(max_new_tokens=24, usable_retries=0))\n"
        "p.generate(['a red fox'])\n"
        "print([m for m in ('transformers', 'peft', 'trl') if m in sys.modules])"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_a_damaged_scratch_policy_is_reported_by_the_transformers_loader(scratch, tmp_path):  # noqa: F811
    import shutil

    from flowrl.policy.loading import PolicyLoadError

    root, _, _ = scratch
    folder = tmp_path / "sft"
    shutil.copytree(root / sft.OUT_DIR, folder)
    (folder / "model.safetensors").write_bytes(b"\x00garbage")
    with pytest.raises(PolicyLoadError, match="could not be loaded"):
        FlowPolicy(folder, None, ServingSettings())
