"""`flowrl generate PROMPT`: a ComfyUI workflow for a prompt from the registered (or a local) policy."""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from flowrl.cli import app, fail
from flowrl.config import load_params
from flowrl.errors import FlowRLError

class OutputFormat(str, Enum):
    """What `flowrl generate` prints."""

    api = "api"
    ui = "ui"


URI_SCHEMES = ("models:/", "runs:/", "s3://", "file://", "http://", "https://", "mlflow-artifacts:/")


def load_generator(model: str, params_path: Path, profile: str | None):
    """A function (prompts, gamma, seed, object_info=None) -> results, for an MLflow model URI, a saved MLflow
    model folder, or a pipeline `models/` folder (sft/ and, when trained, grpo/)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from flowrl.tracking.pyfunc import FlowPolicy, ServingSettings
    from flowrl.tracking.runs import tracking_uri

    path = Path(model)
    if not model.startswith(URI_SCHEMES) and (path / "sft" / "policy.json").exists():
        policy = FlowPolicy.from_models_dir(path, ServingSettings.from_params(load_params(params_path, profile)))
        return lambda prompts, gamma, seed, object_info=None: policy.generate(prompts, gamma=gamma, seed=seed, object_info=object_info)
    if not model.startswith(URI_SCHEMES) and not (path / "MLmodel").exists():
        fail(f"--model {model}: not a models:/ URI, an MLflow model folder (no MLmodel) or a pipeline models folder (no sft/policy.json); "
             "pass models:/<name>@champion or the folder the sft stage wrote")
    uri = tracking_uri(Path("."))
    if model.startswith(("models:/", "runs:/")) and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        fail(f"--model {model}: no MLflow store at {uri} (run from the repository root, set MLFLOW_TRACKING_URI, "
             "or register a model with `dvc repro register`), or pass a local models folder")
    mlflow.set_tracking_uri(uri)
    try:
        loaded = mlflow.pyfunc.load_model(model)
    except MlflowException as exc:
        fail(f"--model {model}: cannot be loaded from {mlflow.get_tracking_uri()} ({exc.message.splitlines()[0]}); "
             "register one with `dvc repro register`, or pass an existing version/alias or a local folder")

    def predict(prompts: list[str], gamma: float | None, seed: int | None, object_info=None) -> list[dict]:
        extra = {k: v for k, v in (("gamma", gamma), ("seed", seed)) if v is not None}
        if object_info is not None:
            extra["object_info"] = json.dumps(object_info.nodes)
        try:
            return loaded.predict(prompts, params=extra or None)
        except MlflowException as exc:
            raise FlowRLError(exc.message) from None

    return predict


def submit_workflow(url: str, workflow: dict) -> str:
    """Validate `workflow` against the node catalog and submit it to the ComfyUI server at `url`; return the prompt id."""
    from flowrl.comfy.client import ComfyUIClient
    from flowrl.comfy.validate import ensure_valid

    ensure_valid(workflow, source="generated workflow")
    client = ComfyUIClient(url, timeout=30.0, retries=1, backoff=0.5)
    try:
        return client.submit(workflow)
    finally:
        client.close()


@app.command("generate")
def generate_cmd(
    prompt: str = typer.Argument(..., help="What the image should show."),
    gamma: float | None = typer.Option(None, help="Dual-model guidance strength (>= 0); default: the model's (policy.gamma). Ignored by SFT-only models."),
    model: str | None = typer.Option(None, help="models:/<name>@<alias> (default: the registered champion), an MLflow model folder, or a pipeline models/ folder."),
    submit: str | None = typer.Option(None, help="ComfyUI server URL (e.g. http://127.0.0.1:8188): validate the workflow, queue it, print its prompt id."),
    seed: int | None = typer.Option(None, help="Sampling seed; the same seed gives the same workflow."),
    params: Path = typer.Option(Path("params.yaml"), "--params", help="params.yaml to read the model name and sampling settings from."),
    profile: str | None = typer.Option(None, help="Profile of params.yaml to use (default: its `profile` key)."),
    format: OutputFormat = typer.Option(OutputFormat.api, "--format", help="api: the API (prompt) JSON ComfyUI queues; ui: a workflow to open in the ComfyUI editor, laid out left to right."),
    object_info: str | None = typer.Option(None, "--object-info", help="Your ComfyUI: its URL (http://127.0.0.1:8188) or a saved copy of <URL>/object_info. Only installed node classes and model files are generated; the changed choices are printed."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write the workflow JSON here instead of printing it."),
) -> None:
    """Print a ComfyUI workflow for PROMPT (API format, or --format ui for the editor); with --submit, also queue it."""
    from flowrl.cli_flow import write_or_print

    try:
        if model is None:
            reg = load_params(params, profile).register
            model = f"models:/{reg.model_name}@{reg.champion_alias}"
        info = None
        if object_info is not None:
            from flowrl.comfy.object_info import load_object_info

            info = load_object_info(object_info)
        generate = load_generator(model, params, profile)
        result: dict[str, Any] = (generate([prompt], gamma, seed, info) if info is not None else generate([prompt], gamma, seed))[0]
        for note in (result.get("notes") or "").split("; ") if result.get("notes") else []:
            typer.secho(f"note: {note}", err=True, fg=typer.colors.YELLOW)
        if not result["valid"]:
            fail(f"the model's flow is not a usable workflow: {result['error']}\nraw flow:\n{result['flow']}\n"
                 "try another --seed, or a better-trained model", code=1)
        if format is OutputFormat.ui:
            from flowrl.comfy.ui_export import api_to_ui

            write_or_print(api_to_ui(result["workflow"], source="generated workflow"), out)
        else:
            write_or_print(result["workflow"], out)
        if submit:
            typer.echo(f"prompt_id: {submit_workflow(submit, result['workflow'])}")
    except FlowRLError as exc:
        fail(str(exc))
