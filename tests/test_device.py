"""Device placement (flowrl.runtime.device) without a GPU: monkeypatched torch.cuda, the meta device, a fake device map."""

from __future__ import annotations

import warnings

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from flowrl.params.model import resolve
from flowrl.runtime import device as dev
from flowrl.runtime.device import DeviceError, Placement


@pytest.fixture(autouse=True)
def _no_configured_setting(monkeypatch):
    monkeypatch.delenv(dev.ENV, raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    dev.configure(None)
    yield
    dev.configure(None)


def fake_gpu(monkeypatch, bf16: bool = True) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)


def small_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
        )
    )


def test_auto_is_the_cpu_without_cuda_and_cuda_local_rank_with_it(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dev.resolve_device("auto") == torch.device("cpu") == dev.resolve_device()
    with pytest.raises(DeviceError, match="no CUDA"):
        dev.resolve_device("cuda")
    fake_gpu(monkeypatch)
    assert dev.resolve_device("auto") == torch.device("cuda", 0)
    monkeypatch.setenv("LOCAL_RANK", "3")  # accelerate launch / torchrun: one process per GPU
    assert dev.resolve_device() == torch.device("cuda", 3)
    assert dev.resolve_device("cuda:1") == torch.device("cuda", 1) and dev.resolve_device("cpu").type == "cpu"


def test_the_setting_comes_from_params_then_the_environment_then_auto(monkeypatch):
    fake_gpu(monkeypatch)
    monkeypatch.setenv(dev.ENV, "cpu")
    assert dev.current() == "cpu" and dev.resolve_device().type == "cpu"
    dev.configure("cuda:2")
    assert dev.resolve_device() == torch.device("cuda", 2)
    with pytest.raises(DeviceError, match="not a device"):
        dev.configure("gpu0")
    assert resolve({}).device == "auto" and resolve({"device": "cuda:1"}).device == "cuda:1"
    with pytest.raises(Exception, match="device"):
        resolve({"device": "tpu"})


def test_frozen_weights_are_bf16_only_on_a_bf16_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = dev.placement("auto")
    assert cpu == Placement(torch.device("cpu"), torch.float32) and not cpu.moves
    fake_gpu(monkeypatch, bf16=True)
    assert dev.placement("cuda").dtype == torch.bfloat16 and dev.placement("cuda").moves
    assert dev.placement("cuda", frozen=False).dtype == torch.float32  # weights trained in full keep fp32 masters
    fake_gpu(monkeypatch, bf16=False)  # e.g. a V100 / T4
    assert dev.placement("cuda").dtype == torch.float32


def test_on_the_cpu_nothing_moves_or_changes_dtype():
    model = small_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert dev.place(model, "cpu") is model
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert dev.load_kwargs(None) == {"dtype": torch.float32} == dev.load_kwargs(dev.placement("cpu"))


def test_a_placement_moves_the_weights_and_casts_frozen_ones():
    model = dev.place(small_llama(), Placement(torch.device("meta"), torch.bfloat16))
    assert {(p.device.type, p.dtype) for p in model.parameters()} == {("meta", torch.bfloat16)}
    assert dev.model_device(model).type == "meta"
    batch = dev.inputs_to({"input_ids": torch.ones(1, 3, dtype=torch.long), "n": 1}, torch.device("meta"))
    assert batch["input_ids"].device.type == "meta" and batch["n"] == 1


def test_the_fake_device_map_reaches_from_pretrained(monkeypatch, tmp_path):
    """Reward members load straight onto the GPU in bf16 (device_map), on the CPU in fp32 as before."""
    from flowrl.reward import ensemble

    seen = []

    class FakeAuto:
        @staticmethod
        def from_pretrained(folder, **kwargs):
            seen.append(kwargs)
            return torch.nn.Linear(2, 1)

    monkeypatch.setattr(ensemble, "AutoModelForSequenceClassification", FakeAuto)
    fake_gpu(monkeypatch)
    ensemble.load_member(tmp_path, dev.placement("cuda:1"))
    ensemble.load_member(tmp_path, dev.placement("cpu"))
    assert seen[0]["device_map"] == {"": "cuda:1"} and seen[0]["dtype"] == torch.bfloat16
    assert "device_map" not in seen[1] and seen[1]["dtype"] == torch.float32


def test_the_policy_base_is_built_where_the_placement_says(tiny_policy_cfg):
    from flowrl.policy.loading import load_base_model

    on_meta = load_base_model(tiny_policy_cfg, 300, 0, Placement(torch.device("meta"), torch.bfloat16))
    assert {(p.device.type, p.dtype) for p in on_meta.parameters()} == {("meta", torch.bfloat16)}
    plain = load_base_model(tiny_policy_cfg, 300, 0)
    same = load_base_model(tiny_policy_cfg, 300, 0, dev.placement("cpu"))
    assert all(torch.equal(a, b) and a.dtype == torch.float32 for a, b in zip(plain.parameters(), same.parameters()))


def test_autocast_on_the_cpu_as_configured_and_always_on_a_bf16_gpu(monkeypatch):
    assert not isinstance(dev.autocast("cpu", False), torch.autocast)
    cpu = dev.autocast("cpu", True)
    assert isinstance(cpu, torch.autocast) and cpu.device == "cpu" and cpu.fast_dtype == torch.bfloat16
    fake_gpu(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a CPU build of torch may warn that CUDA autocast is unavailable
        gpu = dev.autocast("cuda:0", False)
    assert isinstance(gpu, torch.autocast) and gpu.device == "cuda" and gpu.fast_dtype == torch.bfloat16


def test_trainers_use_the_cpu_only_when_the_setting_resolves_to_it(monkeypatch):
    from flowrl.runtime.trainer_defaults import common_trainer_kwargs

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    kw = common_trainer_kwargs("out", 0, False, 5)
    assert (
        kw["use_cpu"] is True and kw["gradient_checkpointing"] is False and kw["gradient_checkpointing_kwargs"] is None
    )
    fake_gpu(monkeypatch)
    kw = common_trainer_kwargs("out", 0, True, 5, gradient_checkpointing=True)
    assert kw["use_cpu"] is False and kw["gradient_checkpointing_kwargs"] == {"use_reentrant": False}
    dev.configure("cpu")
    assert common_trainer_kwargs("out", 0, False, 5)["use_cpu"] is True


@pytest.fixture
def tiny_policy_cfg():
    from flowrl.params.model import PolicyConfig

    return PolicyConfig(source="tiny", bf16=False)


def test_loaders_without_a_device_use_the_setting_in_force(monkeypatch, tmp_path):
    """Ensemble.load (GRPO, evaluate) places members by the configured setting, or FLOWRL_DEVICE when serving."""
    from flowrl.reward import ensemble

    seen = []

    class FakeAuto:
        @staticmethod
        def from_pretrained(folder, **kwargs):
            seen.append(kwargs)
            return torch.nn.Linear(2, 1)

    monkeypatch.setattr(ensemble, "AutoModelForSequenceClassification", FakeAuto)
    monkeypatch.setattr(ensemble, "AutoTokenizer", FakeAuto)
    ensemble.write_spec(tmp_path, 2, 64, 8, False)
    fake_gpu(monkeypatch)
    monkeypatch.setenv(dev.ENV, "cuda:1")  # serving: no params, the environment
    assert len(ensemble.Ensemble.load(tmp_path)) == 2
    dev.configure("cpu")  # a stage: params.device wins
    ensemble.Ensemble.load(tmp_path)
    members = [kw for kw in seen if "dtype" in kw]
    assert [kw.get("device_map") for kw in members] == [{"": "cuda:1"}] * 2 + [None] * 2
