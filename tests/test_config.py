from pathlib import Path

import pytest
import yaml

from flowrl.config import deep_merge, load_params, resolve
from flowrl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_repo_params_resolve_for_every_profile():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    sizes = {name: resolve(raw, name).prompts.n_prompts for name in ("tiny", "cpu", "paper")}
    assert sizes["tiny"] < sizes["cpu"] <= sizes["paper"]
    assert resolve(raw).profile == raw["profile"] == "cpu"


def test_profile_overrides_only_what_it_names():
    raw = {"prompts": {"n_prompts": 100, "n_holdout": 10, "strict": True}, "profiles": {"tiny": {"prompts": {"n_prompts": 50}}}}
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


def test_every_profile_names_every_section():
    """dvc.yaml lists profiles.<name>.<section> as params; DVC fails on a missing key."""
    from flowrl.config import Params

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    sections = {name for name, field in Params.model_fields.items() if name not in ("profile", "seed", "device")}  # top-level scalars
    for profile, overrides in raw["profiles"].items():
        assert sections <= set(overrides), f"profiles.{profile} lacks {sorted(sections - set(overrides))}"


def test_dvc_params_exist_in_params_yaml():
    """Every params key a dvc.yaml stage names resolves in params.yaml."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage, spec in stages.items():
        for key in spec.get("params", []):
            node = raw
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"dvc stage {stage}: params key {key} missing"
                node = node[part]
