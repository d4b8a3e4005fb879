"""The policy as one MLflow pyfunc model: save/load/predict round trip on a tiny policy, input checks, fallbacks.

`build_tiny_policy` is also used by the registry, serve and CLI tests (imported as a module).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from flowrl.comfy.graph import PROMPT_PLACEHOLDER
from flowrl.comfy.validate import validate_graph
from flowrl.encoding.codec import encode_flow
from flowrl.params.model import load_params
from flowrl.policy.inference import FlowPolicy, ServingSettings, flow_to_workflow
from flowrl.policy.requests import PolicyInputError, read_prompts
from flowrl.tracking import pyfunc

REPO = Path(__file__).resolve().parents[2]
TOKENS = ["<|KSampler|>", "<|CLIPTextEncode|>", "<|steps|>"]
SETTINGS = ServingSettings(gamma=1.5, temperature=0.9, max_new_tokens=12, batch_size=4, seed=3, max_prompt_tokens=40)
# a small valid API graph (checked against the node catalog in test_flow_to_workflow_fills_the_prompt)
GRAPH = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "deliberate_v2.safetensors"}},
    "2": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": PROMPT_PLACEHOLDER}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["1", 1], "text": "blurry"}},
    "4": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "5": {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "positive": ["2", 0],
            "negative": ["3", 0],
            "latent_image": ["4", 0],
            "seed": 1,
            "steps": 20,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "denoise": 1.0,
        },
    },
    "6": {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["1", 2]}},
    "7": {"class_type": "SaveImage", "inputs": {"images": ["6", 0], "filename_prefix": "flowrl"}},
}


def build_tiny_policy(models: Path, grpo: bool = True, policy_cfg=None) -> Path:
    """A `models/` folder laid out as the pipeline writes it: sft/ (LoRA + full embed/lm_head copies,
    extended tokenizer, policy.json) and, when `grpo`, grpo/ (a random LoRA on the merged SFT model)."""
    from peft import LoraConfig, get_peft_model

    from flowrl.policy.loading import load_policy, load_sft_merged, save_policy_spec

    params = load_params(REPO / "params.yaml", profile="tiny")
    policy_cfg = policy_cfg or params.policy
    model, tokenizer = load_policy(policy_cfg, TOKENS, seed=1)
    sft_cfg = LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["q_proj", "v_proj"],
        modules_to_save=["lm_head", "embed_tokens"],
        ensure_weight_tying=True,
        task_type="CAUSAL_LM",
    )
    sft = get_peft_model(model, sft_cfg)
    sft.save_pretrained(str(models / "sft"), safe_serialization=True)
    tokenizer.save_pretrained(str(models / "sft"))
    save_policy_spec(models / "sft", policy_cfg, 1, len(tokenizer) - len(TOKENS))
    if grpo:
        base, _ = load_sft_merged(models / "sft")
        torch.manual_seed(0)  # init_lora_weights=False: a GRPO adapter that really changes the outputs
        adapter = get_peft_model(
            base,
            LoraConfig(
                r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM"
            ),
        )
        adapter.save_pretrained(str(models / "grpo"), safe_serialization=True)
    return models


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory) -> Path:
    return build_tiny_policy(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def loaded(models_dir, tmp_path_factory):
    import mlflow

    path = pyfunc.save_policy_model(
        tmp_path_factory.mktemp("saved") / "policy", models_dir / "sft", models_dir / "grpo", SETTINGS
    )
    return path, mlflow.pyfunc.load_model(str(path))


def check_result(row: dict, prompt: str) -> None:
    """A result is either a valid workflow with the prompt filled in, or invalid with an error message."""
    assert row["prompt"] == prompt and isinstance(row["flow"], str)
    if row["valid"]:
        assert validate_graph(row["workflow"]) == [] and row["error"] is None
        assert any(node["inputs"].get("text") == prompt for node in row["workflow"].values())
    else:
        assert row["workflow"] is None and row["error"].strip()


def test_round_trip_predicts_one_result_per_prompt(loaded):
    import pandas as pd

    path, model = loaded
    assert sorted(p.name for p in (path / "artifacts").iterdir()) == ["grpo", "settings.json", "sft"]
    assert json.loads((path / "artifacts" / "settings.json").read_text())["gamma"] == 1.5
    assert model.metadata.get_params_schema().to_dict()[0]["name"] == "gamma"
    assert (
        not any(path.rglob("*.bin")) and not (path / "artifacts" / "base").exists()
    )  # tiny base: rebuilt, not shipped
    assert (path / "flowrl_policy_model.py").exists() and not any(
        path.rglob("*.pkl")
    )  # models from code: nothing unpickled
    prompts = ["a red fox in the snow", "日本の城と桜、浮世絵 — ünïcödé"]
    rows = model.predict(pd.DataFrame({"prompt": prompts}))
    assert len(rows) == 2
    for row, prompt in zip(rows, prompts, strict=True):
        check_result(row, prompt)
        assert row["method"] == "grpo_cfg_1.5"
    assert model.predict(prompts) == rows  # a plain list of strings works the same (same seed)


def test_params_change_the_sampling(loaded):
    _, model = loaded
    prompts = ["a castle at dusk"]
    base = model.predict(prompts)[0]
    assert model.predict(prompts, params={"seed": 3})[0]["flow"] == base["flow"]
    assert model.predict(prompts, params={"seed": 99})[0]["flow"] != base["flow"]
    assert model.predict(prompts, params={"gamma": 0.0})[0]["method"] == "grpo_cfg_0"


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ([""], "empty"),
        (["   \n"], "empty"),
        ([3], "not a string"),
        (["ok", None], "prompt 1 is missing"),
        ([True], "not a string"),
        ([], "got an empty list"),
    ],
)
def test_bad_prompts_are_invalid_parameter_errors(loaded, bad, says):
    from mlflow.exceptions import MlflowException

    _, model = loaded
    with pytest.raises(MlflowException) as info:
        model.predict(bad)
    assert info.value.error_code == "INVALID_PARAMETER_VALUE"
    assert says in info.value.message


def test_negative_gamma_is_refused(loaded):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="gamma must be"):
        loaded[1].predict(["a fox"], params={"gamma": -1.0})


def test_long_prompt_is_truncated_with_a_note(loaded):
    long_prompt = "a very detailed castle " * 200
    row = loaded[1].predict([long_prompt])[0]
    check_result(row, long_prompt)
    assert "truncated" in row["notes"] and "to 40 tokens" in row["notes"]


def test_sft_only_fallback_ignores_gamma(tmp_path):
    models = build_tiny_policy(tmp_path, grpo=False)
    policy = FlowPolicy.from_models_dir(models, SETTINGS)
    assert not policy.guided
    a, b = policy.generate(["a fox"], gamma=0.0), policy.generate(["a fox"], gamma=3.0)
    assert a[0]["method"] == "sft" and "gamma ignored" in a[0]["notes"]
    assert a[0]["flow"] == b[0]["flow"]


def test_flow_to_workflow_fills_the_prompt():
    assert validate_graph(GRAPH) == []
    workflow, error = flow_to_workflow(encode_flow(GRAPH), "ein Fuchs im Schnee ❄")
    assert error is None and validate_graph(workflow) == []
    assert [n["inputs"]["text"] for n in workflow.values() if n["class_type"] == "CLIPTextEncode"].count(
        "ein Fuchs im Schnee ❄"
    ) == 1
    broken, error = flow_to_workflow(encode_flow(GRAPH).replace("KSampler", "KSamplerX"), "fox")
    assert broken is None and "KSamplerX" in error
    garbage, error = flow_to_workflow("CheckpointLoaderSimple ckpt_name=", "fox")
    assert garbage is None and error


def test_valid_flow_reaches_the_output(loaded, monkeypatch):
    """A policy that samples a valid flow returns its workflow (the sampler is replaced by a fixed flow)."""
    from flowrl.policy.decoding import guidance
    from flowrl.policy.decoding.sampling import Completion

    monkeypatch.setattr(
        guidance,
        "sample_guided",
        lambda model, tok, prompts, cfg, gamma, logits_processor=None: [
            Completion(p, encode_flow(GRAPH), [], True) for p in prompts
        ],
    )
    row = loaded[1].predict(["a lighthouse in a storm"])[0]
    assert row["valid"] and row["error"] is None
    check_result(row, "a lighthouse in a storm")


def test_read_prompts_accepts_the_documented_shapes():
    import pandas as pd

    assert read_prompts("fox") == ["fox"]
    assert read_prompts({"prompt": ["a", "b"]}) == ["a", "b"]
    assert read_prompts(pd.DataFrame({"prompt": ["a"]})) == ["a"]
    with pytest.raises(PolicyInputError, match="no 'prompt'"):
        read_prompts(pd.DataFrame({"text": ["a"], "x": [1]}))


def test_missing_sft_folder_says_what_to_run(tmp_path):
    with pytest.raises(pyfunc.PolicyModelError, match="run the sft stage"):
        pyfunc.save_policy_model(tmp_path / "m", tmp_path / "sft", None, SETTINGS)


def test_local_base_folder_is_shipped_and_used(tmp_path):
    """policy.source=dir: the base folder becomes the `base` artifact, and the model loads after the original is gone."""
    import shutil

    import mlflow

    from flowrl.policy.loading import build_tiny_model, load_tokenizer

    tiny_cfg = load_params(REPO / "params.yaml", profile="tiny").policy
    tokenizer = load_tokenizer(tiny_cfg)
    base_dir = tmp_path / "base-model"
    build_tiny_model(tiny_cfg, len(tokenizer), seed=2).save_pretrained(str(base_dir))
    tokenizer.save_pretrained(str(base_dir))
    dir_cfg = tiny_cfg.model_copy(update={"source": "dir", "model": str(base_dir)})
    models = build_tiny_policy(tmp_path / "models", grpo=False, policy_cfg=dir_cfg)
    path = pyfunc.save_policy_model(tmp_path / "saved", models / "sft", None, SETTINGS)
    assert (path / "artifacts" / "base-model" / "config.json").exists()  # artifacts keep their source names
    shutil.rmtree(base_dir)
    rows = mlflow.pyfunc.load_model(str(path)).predict(["a fox"])
    check_result(rows[0], "a fox")
    assert rows[0]["method"] == "sft"
