"""The grpo stage on tiny models: per-token advantages, reward shaping, a short run, resume after a kill."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from safetensors import safe_open
from trl.trainer.utils import nanstd

from flowrl.io import read_json, write_jsonl
from flowrl.params.model import RewardConfig
from flowrl.policy import grpo, grpo_advantages, grpo_trainer, sft
from flowrl.policy.loading import build_tiny_model, save_policy_spec
from flowrl.reward.encoder import build_surrogate, load_reward_tokenizer
from flowrl.reward.ensemble import Ensemble
from flowrl.reward.shaping import ShapedReward

TOKENS = ["<|KSampler|>", "<|CheckpointLoaderSimple|>", "<|SaveImage|>", "<|steps|>"]
WORDS = "red fox forest city night neon portrait castle dragon ocean sunset anime".split()


def odd_length_is_valid(text: str) -> bool:
    """Stand-in validator: about half of the gibberish completions count as valid flows."""
    return len(text) % 2 == 1


class LengthScorer:
    """Stand-in true scorer: a deterministic function of the decoded graph."""

    def __init__(self):
        self.calls = 0

    def score(self, prompts, graphs):
        self.calls += 1
        return [len(g["text"]) / 100.0 for g in graphs]


class FakeEnsemble:
    def __init__(self, mean, std):
        self.mean, self.std = mean, std

    def predict(self, prompts, flows, progress=False):
        return torch.tensor(self.mean[: len(flows)]), torch.tensor(self.std[: len(flows)])


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread beats two spinning ones on the shared cores
    yield
    torch.set_num_threads(before)


def write_inputs(root: Path, params, tokenizer) -> None:
    """Tiny prompts, a tiny SFT policy folder (random LoRA with flow tokens) and tiny reward ensembles."""
    rows = [
        {
            "id": f"p{i}",
            "prompt": f"a {WORDS[i % 12]} {WORDS[(3 * i) % 12]} scene",
            "negative_prompt": None,
            "source": "test",
        }
        for i in range(36)
    ]
    write_jsonl(root / grpo.PROMPTS, rows[:20])
    write_jsonl(root / grpo.HOLDOUT, rows[20:])
    base_vocab = len(tokenizer)
    tokenizer.add_tokens(TOKENS)
    model = build_tiny_model(params.policy, base_vocab, params.seed)
    model.resize_token_embeddings(len(tokenizer), mean_resizing=False)
    peft_model = get_peft_model(model, sft.lora_config(params.sft))
    peft_model.save_pretrained(str(root / grpo.SFT_DIR))
    tokenizer.save_pretrained(str(root / grpo.SFT_DIR))
    save_policy_spec(root / grpo.SFT_DIR, params.policy, params.seed, base_vocab)
    rtok = load_reward_tokenizer(params.reward)
    for name, n in (("full", 3), ("prefix", 1)):
        members = [build_surrogate(params.reward, len(rtok), seed=i) for i in range(n)]
        Ensemble(members, rtok, max_length=64, batch_size=16, bf16=False).save(root / grpo.REWARD_DIR / name)


def stage_params(tiny_params, **reward):
    # tau high: the random surrogates disagree a lot, and the run should see real (certain) rewards
    reward_cfg = tiny_params.reward.model_copy(update={"tau": 10.0, **reward})
    return tiny_params.model_copy(update={"reward": reward_cfg})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, _base_tokenizer, tiny_params):
    import copy

    root = tmp_path_factory.mktemp("grpo")
    params = stage_params(tiny_params, component_reward=True)
    # probe at step 3, and once more after the last step (4)
    params = params.model_copy(update={"grpo": params.grpo.model_copy(update={"probe_every": 3, "n_probe": 4})})
    write_inputs(root, params, copy.deepcopy(_base_tokenizer))
    shapes, original = [], grpo_trainer.group_token_advantages

    def recording(rewards, mask, num_generations, eps=grpo_advantages.ADV_EPS, **kwargs):
        out = original(rewards, mask, num_generations, eps, **kwargs)
        shapes.append((tuple(rewards.shape), tuple(out.shape)))
        return out

    grpo_trainer.group_token_advantages = recording
    scorer = LengthScorer()
    try:
        metrics = grpo.run(params, root, validator=odd_length_is_valid, scorer=scorer, decoder=lambda t: {"text": t})
    finally:
        grpo_trainer.group_token_advantages = original
    return root, params, metrics, shapes, scorer


def test_doctest():
    for module in (grpo_trainer, grpo_advantages):
        result = doctest.testmod(module)
        assert result.failed == 0, module.__name__
    assert doctest.testmod(grpo_advantages).attempted > 0


def test_token_advantages_reduce_to_trl_sequence_advantages():
    g = torch.Generator().manual_seed(0)
    seq = torch.randn(8, generator=g)
    lengths = torch.tensor([3, 5, 1, 4, 2, 5, 5, 3])
    mask = (torch.arange(5)[None, :] < lengths[:, None]).long()
    out = grpo_trainer.group_token_advantages(seq[:, None].expand(8, 5).clone(), mask, num_generations=4)
    grouped = seq.view(-1, 4)
    trl_adv = (grouped - grouped.mean(1, keepdim=True)) / (nanstd(grouped, dim=1, keepdim=True) + 1e-4)
    assert out.shape == (8, 5)
    assert torch.allclose(out, trl_adv.reshape(8, 1) * mask, atol=1e-6)
    assert (out[mask == 0] == 0).all()


def test_token_advantages_follow_the_token_rewards_within_a_completion():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [2.0, 2.0, 2.0]])
    out = grpo_trainer.group_token_advantages(rewards, torch.ones(2, 3), num_generations=2)
    assert out[0, 0] < out[0, 1] < out[0, 2] and torch.allclose(out[1], out[1, :1].expand(3))
    assert abs(float(out.sum())) < 1e-5  # equal-length group: the advantages are centred on the baseline


def test_token_offsets_cover_the_decoded_text(base_tokenizer):
    base_tokenizer.add_tokens(TOKENS)
    text = "1 <|KSampler|> <|steps|> 20\n2 <|SaveImage|> é\n"
    ids = base_tokenizer(text, add_special_tokens=False).input_ids + [base_tokenizer.eos_token_id]
    offsets = grpo_trainer.token_offsets(base_tokenizer, ids)
    assert "".join(text[s:e] for s, e in offsets) == text
    assert offsets[-1][0] == offsets[-1][1]  # EOS: empty span


def reward_fn(std, valid=lambda t: "bad" not in t, tau=0.08):
    cfg = RewardConfig(source="tiny", tau=tau, uncertain_value=0.0, invalid_reward=-1.0)
    return grpo_trainer.SurrogateReward(ShapedReward(FakeEnsemble([0.5, 0.7, -0.3], std), None, cfg, validator=valid))


def test_uncertainty_cutoff_changes_only_uncertain_rewards():
    logged = {}
    log = lambda k, v: logged.setdefault(k, v)  # noqa: E731
    flows = ["f1", "f2", "f3"]
    certain = reward_fn([0.01, 0.2, 0.05], tau=1.0)(["p"] * 3, flows, user_prompt=["p"] * 3)
    cut = reward_fn([0.01, 0.2, 0.05], tau=0.08)(["p"] * 3, flows, user_prompt=["p"] * 3, log_metric=log)
    assert certain == pytest.approx([0.5, 0.7, -0.3]) and cut == pytest.approx([0.5, 0.0, -0.3])
    assert logged["share_uncertain"] == pytest.approx(1 / 3) and logged["validity"] == 1.0


def test_invalid_completions_get_the_lowest_reward():
    logged = {}
    rewards = reward_fn([0.0, 0.0, 0.0])(
        ["p"] * 4,
        ["ok", "bad one", "ok2", "bad"],
        user_prompt=["p"] * 4,
        log_metric=lambda k, v: logged.setdefault(k, v),
    )
    assert rewards[1] == rewards[3] == -1.0 and min(rewards[0], rewards[2]) > -1.0
    assert logged["validity"] == 0.5


def test_run_writes_metrics_log_plot_and_a_lora_only_adapter(trained):
    root, params, metrics, shapes, scorer = trained
    assert metrics["steps"] == params.grpo.max_steps and metrics["resumed_from_step"] == 0
    assert read_json(root / grpo.METRICS) == pytest.approx(metrics, nan_ok=True)
    for key in ("reward_mean_final", "validity", "share_uncertain", "true_score_probe_final"):
        assert key in metrics
    assert -1.0 <= metrics["reward_mean_final"] and 0.0 <= metrics["validity"] <= 1.0
    log = read_json(root / grpo.LOG.path)
    assert [e["step"] for e in log] == list(range(1, params.grpo.max_steps + 1))
    assert all({"reward", "reward_std", "kl", "validity", "share_uncertain"} <= set(e) for e in log)
    probed = [e["step"] for e in log if e["true_score_probe"] is not None]
    assert (
        probed == list(range(params.grpo.probe_every, params.grpo.max_steps + 1, params.grpo.probe_every))
        and scorer.calls > 0
    )
    assert metrics["n_probe_prompts"] == 4 and 0.0 <= metrics["validity"] <= 1.0
    assert math.isnan(metrics["true_score_probe_final"]) == (metrics["validity"] == 0.0)
    assert (root / grpo.PLOT).read_bytes()[:4] == b"\x89PNG"
    out = root / grpo.OUT_DIR
    assert (out / "adapter_model.safetensors").exists() and not list(out.glob("*.bin"))
    assert read_json(out / "policy.json")["grpo"]["lora_r"] == params.grpo.lora_r
    with safe_open(str(out / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("lora_" in k for k in keys)
    assert not any("lm_head" in k or "embed_tokens" in k for k in keys)


def test_component_reward_gives_token_advantages_of_shape_b_by_t(trained):
    _, params, _, shapes, _ = trained
    assert len(shapes) == params.grpo.max_steps  # one generation batch per step
    for rewards_shape, adv_shape in shapes:
        assert adv_shape == rewards_shape and adv_shape[0] == params.grpo.batch_size and adv_shape[1] >= 1


def test_adapter_loads_for_guidance(trained):
    from flowrl.policy.decoding.guidance import load_guided_policy

    root = trained[0]
    model, tok = load_guided_policy(root / grpo.SFT_DIR, root / grpo.OUT_DIR)
    assert "grpo" in model.peft_config and len(tok) > len(TOKENS)


class Kill(Exception):
    """Raised by a callback to simulate a killed run."""


def test_killed_run_resumes_to_the_same_number_of_steps(tmp_path, _base_tokenizer, tiny_params):
    import copy

    from transformers import TrainerCallback

    class KillAfterSave(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise Kill("simulated kill after the step-2 checkpoint")

    params = stage_params(tiny_params, component_reward=False)
    params = params.model_copy(update={"grpo": params.grpo.model_copy(update={"n_probe": 0})})
    write_inputs(tmp_path, params, copy.deepcopy(_base_tokenizer))
    with pytest.raises(Kill):
        grpo.run(params, tmp_path, validator=odd_length_is_valid, callbacks=[KillAfterSave()])
    assert not (tmp_path / grpo.OUT_DIR).exists()
    metrics = grpo.run(params, tmp_path, validator=odd_length_is_valid)
    assert metrics["resumed_from_step"] == 2 and metrics["steps"] == params.grpo.max_steps
    assert math.isnan(metrics["true_score_probe_final"])
    log = read_json(tmp_path / grpo.LOG.path)
    assert [e["step"] for e in log] == list(range(1, params.grpo.max_steps + 1))
    # one reward per flow (the cpu profile's setting) still takes the quality groups' statistics
    assert params.grpo.quality_groups and all("quality_variance_share" in e for e in log)


def test_missing_inputs_name_the_stage_to_run(tmp_path, tiny_params):
    with pytest.raises(grpo.GRPODataError, match="sft"):
        grpo.run(tiny_params, tmp_path)


def test_grpo_samples_at_its_own_temperature_not_the_delivery_one(tmp_path, tiny_params):
    from flowrl.policy.grpo_config import trainer_args

    cfg = tiny_params.grpo.model_copy(update={"temperature": 1.3})
    policy = tiny_params.policy.model_copy(update={"temperature": 0.4})
    assert trainer_args(cfg, policy, tmp_path, seed=0).temperature == 1.3  # also the log-prob scale of trl's loss
