"""Bad params files: each ends in one ConfigError naming the file, the key and the fix; never a traceback,
never a silently changed setting (bool-as-number, float-as-int, inf, duplicate keys, empty file)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from flowrl.errors import ConfigError
from flowrl.params.model import load_params, resolve

REPO = Path(__file__).resolve().parents[1]


def _with(section: str, key: str, value) -> str:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw[section][key] = value
    return yaml.safe_dump(raw)


CASES = {
    "list": ("- prompts\n- policy\n", ["top level is a list", "mapping of sections"]),
    "invalid-utf8": (b"seed: 1\nprompts:\n  n_prompts: 10\xff\n", ["not UTF-8 text (byte 0xff at offset 32)"]),
    "deep-5000-flow": ("a: " + "[" * 5000 + "]" * 5000, ["nested too deeply"]),
    "deep-5000-map": ("a: " + "{k: " * 5000 + "1" + "}" * 5000, ["nested too deeply"]),
    "deep-40": ("a: " + "{k: " * 40 + "1" + "}" * 40, ["nested deeper than 32 levels"]),
    "empty": ("", ["is empty", "git checkout"]),
    "comment-only": ("# nothing\n", ["is empty"]),
    "scalar": ("42\n", ["top level is a int"]),
    "not-yaml": ("a: [1,\n", ["not valid YAML"]),
    "duplicate-key": ("seed: 1\nseed: 2\n", ["line 2: key 'seed' appears twice"]),
    "bool-as-int": (_with("register", "batch_size", True), ["register", "batch_size: true is a boolean"]),
    "bool-as-float": (_with("policy", "gamma", False), ["policy", "gamma: false is a boolean"]),
    "inf": (_with("policy", "gamma", float("inf")), ["policy", "gamma: inf is not a finite number"]),
    "inf-in-list": (
        _with("evaluate", "gammas", [1.5, float("inf")]),
        ["evaluate", "gammas: [1.5, inf] is not a finite number"],
    ),
    "nan": (_with("policy", "temperature", float("nan")), ["policy", "temperature: nan is not a finite number"]),
    "float-as-int": (_with("prompts", "n_prompts", 1e30), ["n_prompts: 1e+30 is a decimal number", "integer"]),
    "fraction-as-int": (_with("prompts", "n_prompts", 2.5), ["n_prompts: 2.5 is a decimal number"]),
    "huge-int": (_with("prompts", "n_prompts", 10**30), ["prompts.n_prompts = 1e+30 is out of range"]),
    "profile-not-a-name": (
        _with("register", "batch_size", 8).replace("profile: cpu", "profile: [cpu]"),
        ["'profile' must be a name"],
    ),
    "cap-out-of-range": (_with("register", "max_prompts_per_request", 0), ["register.max_prompts_per_request"]),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_params_files_fail_with_one_clear_error(tmp_path, case):
    text, words = CASES[case]
    path = tmp_path / "params.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    start = time.perf_counter()
    with pytest.raises(ConfigError) as info:
        load_params(path)
    assert time.perf_counter() - start < 15  # 5,000-deep YAML is refused, not chewed on
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "Traceback" not in message
    for word in words:
        assert word in message, (case, message)


def test_directory_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="is a directory; pass the params.yaml file"):
        load_params(tmp_path)
    with pytest.raises(ConfigError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_oversized_file(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text("# " + "x" * (2 * 1024 * 1024))
    with pytest.raises(ConfigError, match="too large"):
        load_params(path)


def test_the_repo_params_and_int_for_float_still_load(tmp_path):
    assert load_params(REPO / "params.yaml", "tiny").register.max_prompts_per_request > 0
    path = tmp_path / "params.yaml"
    path.write_text(_with("policy", "temperature", 1))  # an int where a float is expected is exact: accepted
    assert load_params(path).policy.temperature == 1.0


def test_resolve_refuses_non_mappings():
    with pytest.raises(ConfigError, match="top level is a list"):
        resolve(["a"])
    with pytest.raises(ConfigError, match="'profiles' must map"):
        resolve({"profiles": ["tiny"]})


def test_infinity_only_where_it_is_a_setting():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["reward"]["tau"] = float("inf")  # "no uncertainty cutoff": the no_uncertainty ablation
    assert resolve(raw).reward.tau == float("inf")
    raw["reward"]["tau"] = float("nan")
    with pytest.raises(ConfigError, match="tau: nan is not a finite number"):
        resolve(raw)
