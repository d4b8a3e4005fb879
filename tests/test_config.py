import re
from pathlib import Path

import pytest
import yaml

from flowrl.errors import ConfigError
from flowrl.params.model import deep_merge, load_params, resolve

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_resolve_for_every_profile():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    sizes = {name: resolve(raw, name).prompts.n_prompts for name in ("tiny", "cpu", "paper")}
    assert sizes["tiny"] < sizes["cpu"] <= sizes["paper"]
    assert resolve(raw).profile == raw["profile"] == "cpu"


def test_profile_overrides_only_what_it_names():
    raw = {
        "prompts": {"n_prompts": 100, "n_holdout": 10, "strict": True},
        "profiles": {"tiny": {"prompts": {"n_prompts": 50}}},
    }
    params = resolve(raw, "tiny")
    assert (params.prompts.n_prompts, params.prompts.n_holdout, params.prompts.strict) == (50, 10, True)


def test_deep_merge_does_not_mutate():
    base = {"a": {"b": 1, "c": 2}}
    assert deep_merge(base, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    assert base == {"a": {"b": 1, "c": 2}}


@pytest.mark.parametrize(
    "raw, needle",
    [
        ({"profile": "huge"}, "unknown profile 'huge'"),
        ({"prompts": {"n_prompts": 10, "n_holdout": 10}}, "n_holdout must be smaller"),
        ({"prompts": {"typo_key": 1}}, "prompts.typo_key"),
        ({"prompts": {"source": "file"}}, "set prompts.path"),
    ],
)
def test_bad_params_name_the_problem(raw, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        resolve(raw)


def test_missing_or_broken_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "params.yaml"
    bad.write_text("prompts: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_params(bad)


def test_model_defaults_are_the_values_of_params_yaml():
    """params.yaml is the one source of defaults: the models' own defaults (for configs built in memory) equal it."""
    from flowrl.params.model import Params, missing_keys

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.pop("profiles")
    assert missing_keys(raw) == []
    assert Params().model_dump(mode="json") == Params.model_validate(raw).model_dump(mode="json")


@pytest.mark.parametrize("drop", ["sft", "sft.learning_rate", "policy.scratch.vocab_size", "seed"])
def test_a_partial_params_file_names_what_is_missing(tmp_path, drop):
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    *parents, last = drop.split(".")
    section = raw
    for name in parents:
        section = section[name]
    del section[last]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=rf"lacks {re.escape(drop)}\b.*restore them"):
        load_params(tmp_path / "params.yaml")


def test_an_empty_params_file_is_a_clear_error(tmp_path):
    (tmp_path / "params.yaml").write_text("# nothing\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_params(tmp_path / "params.yaml")


def test_a_custom_profile_of_the_file_is_taken():
    raw = {"prompts": {"n_prompts": 100, "n_holdout": 10}, "profiles": {"mine": {"prompts": {"n_prompts": 40}}}}
    params = resolve(raw, "mine")
    assert params.profile == "mine" and params.prompts.n_prompts == 40
    with pytest.raises(ConfigError, match=r"unknown profile 'yours'; choose one of \['cpu', 'mine', 'paper', 'tiny'\]"):
        resolve(raw, "yours")


def test_a_bad_value_set_by_a_profile_names_the_profile():
    raw = {"policy": {"temperature": 0.9}, "profiles": {"cpu": {"policy": {"temperature": -1}}}}
    with pytest.raises(
        ConfigError,
        match=r"profile cpu\):\n  profiles\.cpu\.policy\.temperature \(set by profile cpu\): Input should be greater than 0",
    ):
        resolve(raw, "cpu")
    raw = {"policy": {"temperature": -1}, "profiles": {"cpu": {}}}
    with pytest.raises(ConfigError, match=r"\n  policy\.temperature: Input"):
        resolve(raw, "cpu")
