"""The stage declarations (flowrl.pipeline.stages) and what is generated from them agree; stages read only what they declare."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from flowrl.params.model import Params, resolve
from flowrl.pipeline.files import ARCHITECTURE, DVC_YAML, README, render_architecture, render_dvc_yaml, render_readme
from flowrl.pipeline.stage_params import UndeclaredParamError, declared_view, resolved, write_resolved
from flowrl.pipeline.stages import STAGES, ResolvedParams, stage_function

REPO = Path(__file__).resolve().parents[1]


def test_checked_in_dvc_yaml_is_generated_from_the_declarations():
    assert (REPO / DVC_YAML).read_text() == render_dvc_yaml(), "dvc.yaml is stale: run `flowrl pipeline dvc-yaml`"


def test_checked_in_architecture_diagram_is_generated_from_the_declarations():
    assert (REPO / ARCHITECTURE).read_text() == render_architecture(), (
        "docs/architecture.md is stale: run `flowrl pipeline diagram`"
    )


def test_readme_layout_is_generated_from_the_packages():
    text = (REPO / README).read_text()
    assert text == render_readme(text), "the README's layout table is stale: run `flowrl pipeline diagram`"


def test_dvc_yaml_names_the_declared_stages_in_order():
    stages = yaml.safe_load((REPO / DVC_YAML).read_text())["stages"]
    assert list(stages) == ["params", *STAGES]
    for name, stage in STAGES.items():
        assert stages[name]["deps"][0] == str(ResolvedParams.of(name))
        assert stages[name]["metrics"] == [{str(stage.metrics): {"cache": False}}]


def test_every_input_is_written_by_an_earlier_stage():
    written: list[Path] = []
    for stage in STAGES.values():
        for path in stage.inputs:
            assert any(path == w or w in path.parents for w in written), (
                f"{stage.name} reads {path}, which no earlier stage writes"
            )
        written += [*stage.outs, *stage.uncached, stage.metrics]


def test_every_declared_key_exists():
    fields = Params.model_fields
    for stage in STAGES.values():
        for key in stage.params:
            name, _, sub = key.partition(".")
            assert name in fields, f"{stage.name}: {key}"
            if sub:
                assert sub in fields[name].annotation.model_fields, f"{stage.name}: {key}"


def test_stage_functions_import():
    for name in STAGES:
        assert callable(stage_function(name))


def _read_sections(module: str) -> set[str]:
    """Params fields a module reads as `params.<field>` (the stage functions' naming)."""
    tree = ast.parse(Path(importlib.import_module(module).__file__).read_text())
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "params"
        and node.attr in Params.model_fields
    }


# Modules a stage hands its params to, besides its own.
HELPERS = {"evaluate": ["flowrl.evaluation.policy_methods"], "register": ["flowrl.policy.inference"]}


@pytest.mark.parametrize("name", list(STAGES))
def test_no_stage_reads_a_params_key_it_does_not_declare(name):
    stage = STAGES[name]
    modules = [stage.run.split(":")[0], *HELPERS.get(name, [])]
    read = set().union(*(_read_sections(m) for m in modules))
    assert read <= stage.sections, (
        f"{name} reads params {sorted(read - stage.sections)} without declaring them in flowrl/pipeline/stages.py"
    )


def test_declared_view_refuses_what_the_stage_did_not_declare():
    params = Params()
    view = declared_view(params, STAGES["validate"])
    assert (view.prompts.min_chars, view.prompts.max_chars) == (params.prompts.min_chars, params.prompts.max_chars)
    with pytest.raises(UndeclaredParamError, match="prompts.n_prompts"):
        view.prompts.n_prompts
    with pytest.raises(UndeclaredParamError, match="reads params seed"):
        view.seed + 1
    with pytest.raises(UndeclaredParamError, match="reads params sft"):
        view.sft.learning_rate
    sft = declared_view(params, STAGES["sft"])
    assert sft.sft == params.sft and sft.policy == params.policy and sft.seed == params.seed


def test_resolved_params_hold_the_active_profile_only():
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    cpu = {name: resolved(resolve(raw, "cpu"), s) for name, s in STAGES.items()}
    raw["profiles"]["paper"]["sft"]["learning_rate"] = 0.5
    raw["profiles"]["tiny"]["triplets"]["n_triplets"] = 7
    assert {name: resolved(resolve(raw, "cpu"), s) for name, s in STAGES.items()} == cpu
    raw["sft"]["learning_rate"] = 0.25
    changed = {name for name, s in STAGES.items() if resolved(resolve(raw, "cpu"), s) != cpu[name]}
    assert changed == {"sft"}
    assert resolved(resolve(raw, "cpu"), STAGES["validate"]) == {"prompts": {"min_chars": 10, "max_chars": 1500}}


def test_write_resolved_writes_one_file_per_stage(tmp_path):
    params = resolve(yaml.safe_load((REPO / "params.yaml").read_text()), "tiny")
    paths = write_resolved(params, tmp_path)
    assert [p.name for p in paths] == [f"{name}.yaml" for name in STAGES]
    assert (
        yaml.safe_load((tmp_path / ResolvedParams.of("grpo")).read_text())["grpo"]["max_steps"] == params.grpo.max_steps
    )
