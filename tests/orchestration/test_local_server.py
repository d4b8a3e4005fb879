"""flows.local_server: what `make pipeline` wraps `dvc repro` in (one Prefect server for every stage)."""

import sys

from flows import local_server

PRINT_URL = [sys.executable, "-c", "import os; print(os.environ.get('PREFECT_API_URL'))"]


def test_a_server_already_configured_is_used_as_it_is(monkeypatch, capfd):
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    monkeypatch.setattr(
        local_server, "local_prefect_server", lambda *a, **k: (_ for _ in ()).throw(AssertionError("started a server"))
    )
    assert local_server.main(PRINT_URL) == 0
    assert capfd.readouterr().out.strip() == "http://prefect.example:4200/api"


def test_no_command_prints_the_usage(capsys):
    assert local_server.main([]) == 2
    assert "python -m flows.local_server CMD" in capsys.readouterr().err


def test_the_exit_code_of_the_command_is_kept(monkeypatch):
    monkeypatch.setenv("PREFECT_API_URL", "http://prefect.example:4200/api")
    assert local_server.main([sys.executable, "-c", "raise SystemExit(3)"]) == 3


def test_a_server_that_cannot_start_falls_back_to_temporary_ones(monkeypatch, capfd):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    monkeypatch.setattr(local_server, "PREFECT", "/nonexistent/prefect")
    assert local_server.main(PRINT_URL) == 0
    captured = capfd.readouterr()
    assert captured.out.strip() == "None" and "temporary Prefect API" in captured.err
