"""`python -m flows STAGE` and `python -m flows.ablations`: bad input exits 2 with one message, no traceback."""

from __future__ import annotations

import pytest

from flowrl.errors import ConfigError, exit_code


def test_exit_code_maps_user_errors_to_2(capsys):
    def bad():
        raise ConfigError("params.yaml: profile 'nope' is not one of tiny, cpu, paper")

    assert exit_code(bad) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: params.yaml: profile 'nope'") and "Traceback" not in err


def test_exit_code_passes_arguments_and_returns_0():
    seen = {}
    assert exit_code(lambda a, b=None: seen.update(a=a, b=b), 1, b=2) == 0
    assert seen == {"a": 1, "b": 2}


def test_bugs_still_raise():
    with pytest.raises(ZeroDivisionError):
        exit_code(lambda: 1 / 0)


def test_unknown_profile_on_the_stage_command(capsys):
    from flows.__main__ import main

    assert main(["prompts", "--profile", "no-such-profile"]) == 2
    assert "no-such-profile" in capsys.readouterr().err


def test_bad_params_are_one_line_before_prefect_starts(tmp_path, monkeypatch, capsys):
    import flows.stages

    def no_flow(**kwargs):
        raise AssertionError("the Prefect flow started (and logged a traceback) before params were checked")

    monkeypatch.setitem(flows.stages.STAGE_FLOWS, "prompts", no_flow)
    monkeypatch.chdir(tmp_path)
    from flows.__main__ import main

    assert main(["prompts"]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {tmp_path}/params.yaml: not found; run from the repository root or pass --params PATH\n"
