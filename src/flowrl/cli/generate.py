"""`flowrl generate PROMPT`: a ComfyUI workflow for a prompt from the registered (or a local) policy."""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Any

import typer

from flowrl.cli.app import app, fail
from flowrl.errors import FlowRLError


class OutputFormat(str, Enum):
    """What `flowrl generate` prints."""

    api = "api"
    ui = "ui"


URI_SCHEMES = ("models:/", "runs:/", "s3://", "file://", "http://", "https://", "mlflow-artifacts:/")


def load_generator(model: str, params_path: Path, profile: str | None):
    """A function (prompts, gamma, seed, object_info=None) -> results, for an MLflow model URI, a saved MLflow
    model folder, or a pipeline `models/` folder (sft/ and, when trained, grpo/)."""
    path = Path(model)
    if not model.startswith(URI_SCHEMES) and (path / "sft" / "policy.json").exists():
        from flowrl.params.model import load_params
        from flowrl.policy.inference import FlowPolicy, ServingSettings
        from flowrl.runtime.device import configure

        params = load_params(params_path, profile)
        configure(params.device)  # where the policy runs (flowrl.runtime.device); FLOWRL_DEVICE for a registered model
        return _generator(FlowPolicy.from_models_dir(path, ServingSettings.from_params(params)))
    if not model.startswith(URI_SCHEMES) and (path / "MLmodel").exists():
        check_mlmodel(path / "MLmodel")
    if not model.startswith(URI_SCHEMES) and not (path / "MLmodel").exists():
        fail(
            f"--model {model}: not a models:/ URI, an MLflow model folder (no MLmodel) or a pipeline models folder (no sft/policy.json); "
            "pass models:/<name>@champion or the folder the sft stage wrote"
        )
    from flowrl.tracking.store import local_model_artifacts, tracking_uri

    uri = tracking_uri(Path("."))
    if (
        artifacts := local_model_artifacts(model, uri)
    ) is not None:  # the embedded store: read in place, no MLflow import
        from flowrl.policy.inference import FlowPolicy

        return _generator(FlowPolicy.from_artifacts(artifacts))
    import mlflow  # 2-3 s: only once the model is known to be an MLflow one
    from mlflow.exceptions import MlflowException

    if (
        model.startswith(("models:/", "runs:/"))
        and uri.startswith("sqlite:///")
        and not Path(uri.removeprefix("sqlite:///")).exists()
    ):
        fail(
            f"--model {model}: no MLflow store at {uri} (run from the repository root, set MLFLOW_TRACKING_URI, "
            "or register a model with `dvc repro register`), or pass a local models folder"
        )
    mlflow.set_tracking_uri(uri)
    # a copy in a temporary folder: loaded in place, MLflow writes registered_model_meta into the store's artifacts
    copy = tempfile.TemporaryDirectory(prefix="flowrl-model-")
    try:
        # the pip-requirements check reads every installed package's metadata (~1-2 s of the 15 s budget); the CLI
        # runs in the environment that registered the model, and `mlflow models serve` still checks
        loaded = mlflow.pyfunc.load_model(model, suppress_warnings=True, dst_path=copy.name)
    except MlflowException as exc:
        fail(
            f"--model {model}: cannot be loaded from {mlflow.get_tracking_uri()} ({exc.message.splitlines()[0]}); "
            "register one with `dvc repro register`, or pass an existing version/alias or a local folder"
        )

    def predict(
        prompts: list[str], gamma: float | None, seed: int | None, object_info=None, _copy=copy
    ) -> list[dict]:  # _copy: the folder lives (and is removed) with this function
        extra = {k: v for k, v in (("gamma", gamma), ("seed", seed)) if v is not None}
        if object_info is not None:
            extra["object_info"] = json.dumps(object_info.nodes)
        try:
            return loaded.predict(prompts, params=extra or None)
        except MlflowException as exc:
            raise FlowRLError(exc.message) from None

    return predict


def _generator(policy):
    return lambda prompts, gamma, seed, object_info=None: policy.generate(
        prompts, gamma=gamma, seed=seed, object_info=object_info
    )


def check_mlmodel(path: Path) -> None:
    """Fail fast, naming the file, when an MLflow model folder's MLmodel is not a readable pyfunc description."""
    import yaml

    try:
        meta = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        meta = None
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    if not isinstance(flavors, dict) or not isinstance(flavors.get("python_function"), dict):
        fail(
            f"--model {path.parent}: {path} is not a readable MLflow pyfunc description (no flavors.python_function); "
            "the folder is damaged: save or download the model again"
        )


# transformers' log level, and no progress bars (transformers' "Loading weights", huggingface_hub's downloads)
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


@contextmanager
def quiet_libraries() -> Iterator[None]:
    """Within the block, library warnings and info logs are muted, so the workflow or one error line is all a
    user sees; warning filters, the warnings-to-logging route and logger levels come back afterwards."""
    loggers = [
        logging.getLogger(n)
        for n in (
            "mlflow",
            "transformers",
            "peft",
            "huggingface_hub",
            "accelerate",
            "urllib3",
            "alembic",
            "py.warnings",
        )
    ]
    levels = [lg.level for lg in loggers]
    saved_env = {k: os.environ.get(k) for k in QUIET_ENV}
    os.environ.update(QUIET_ENV)  # read by transformers and huggingface_hub when first imported (here: lazily, later)
    tf_logging = sys.modules.get(
        "transformers.utils.logging"
    )  # already imported (tests, a notebook): switch it directly
    bars = tf_logging is not None and tf_logging.is_progress_bar_enabled()
    if bars:
        tf_logging.disable_progress_bar()  # the "Loading weights" bar
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # libraries re-enable their warnings locally (mlflow: simplefilter("once")), so what is still shown
        # goes to the logging module (py.warnings), muted here
        logging.captureWarnings(True)
        for lg in loggers:
            lg.setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.captureWarnings(False)
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
            for key, value in saved_env.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
            if bars:
                tf_logging.enable_progress_bar()


def fit_to_family(result: dict, family_map) -> tuple[dict, list[str]]:
    """The model's result with its workflow kept in one checkpoint family (`flowrl.comfy.families.fit_family`), checked
    again on the user's ComfyUI; and the notes saying what was assumed and changed."""
    from flowrl.comfy.families import fit_family
    from flowrl.comfy.object_info import installed_workflow
    from flowrl.comfy.usable import usable_problems

    workflow, changes, assumed = fit_family(result["workflow"], family_map)
    checked, error = installed_workflow(workflow, family_map.info)
    if checked is not None and (problems := usable_problems(checked)):
        checked, error = None, f"after fitting it to one family: {problems[0]}"
    return {**result, "workflow": checked, "valid": checked is not None, "error": error}, [*assumed, *changes]


def submit_workflow(url: str, workflow: dict) -> str:
    """Validate `workflow` against the node catalog and submit it to the ComfyUI server at `url`; return the prompt id."""
    from flowrl.comfy.client import ComfyUIClient
    from flowrl.comfy.validate import ensure_valid

    ensure_valid(workflow, source="generated workflow")
    client = ComfyUIClient(url, timeout=30.0, retries=1, backoff=0.5, setting="--submit")
    try:
        return client.submit(workflow)
    finally:
        client.close()


@app.command("generate")
def generate_cmd(
    prompt: str = typer.Argument(..., help="What the image should show."),
    gamma: float | None = typer.Option(
        None,
        help="Dual-model guidance strength (0 to 100); default: the model's (policy.gamma). Ignored by SFT-only models.",
    ),
    model: str | None = typer.Option(
        None,
        help="models:/<name>@<alias> (default: the registered champion), an MLflow model folder, or a pipeline models/ folder.",
    ),
    submit: str | None = typer.Option(
        None,
        help="ComfyUI server URL (e.g. http://127.0.0.1:8188): validate the workflow, queue it, print its prompt id.",
    ),
    seed: int | None = typer.Option(None, help="Sampling seed (0 to 2**32-1); the same seed gives the same workflow."),
    params: Path = typer.Option(
        Path("params.yaml"), "--params", help="params.yaml to read the model name and sampling settings from."
    ),
    profile: str | None = typer.Option(None, help="Profile of params.yaml to use (default: its `profile` key)."),
    format: OutputFormat = typer.Option(
        OutputFormat.api,
        "--format",
        help="api: the API (prompt) JSON ComfyUI queues; ui: a workflow to open in the ComfyUI editor, laid out left to right.",
    ),
    object_info: str | None = typer.Option(
        None,
        "--object-info",
        help="Your ComfyUI: its URL (http://127.0.0.1:8188) or a saved copy of <URL>/object_info. Only installed node classes and model files are generated; the changed choices are printed.",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Write the workflow JSON to this file instead of printing it (- : print)."
    ),
    checkpoint_family: list[str] | None = typer.Option(
        None,
        "--checkpoint-family",
        help="FILE=FAMILY (sd15, sdxl, pony, turbo, lightning) for one of your checkpoints, LoRAs or VAEs whose family its name does not tell; repeatable. Needs --object-info.",
    ),
    families: Path | None = typer.Option(
        None,
        "--families",
        help="A YAML or JSON file of `file name: family` lines, as --checkpoint-family for many files. Needs --object-info.",
    ),
) -> None:
    """Print a ComfyUI workflow for PROMPT (API format, or --format ui for the editor); with --submit, also queue it."""
    with quiet_libraries():
        _generate(
            prompt, gamma, model, submit, seed, params, profile, format, object_info, out, checkpoint_family, families
        )


def _generate(
    prompt: str,
    gamma: float | None,
    model: str | None,
    submit: str | None,
    seed: int | None,
    params: Path,
    profile: str | None,
    format: OutputFormat = OutputFormat.api,
    object_info: str | None = None,
    out: Path | None = None,
    checkpoint_family: list[str] | None = None,
    families: Path | None = None,
) -> None:
    from flowrl.cli.flow import write_or_print

    try:
        from flowrl.comfy.client import check_server_url
        from flowrl.policy.inference import ServingSettings
        from flowrl.policy.requests import check_sampling_params, read_prompts

        # cheap checks first (no params file, no model): nothing is loaded until the arguments are known to be usable
        read_prompts([prompt])
        check_sampling_params(gamma, seed)
        if submit is not None:
            check_server_url(submit, "--submit")
        if (checkpoint_family or families is not None) and object_info is None:
            fail("--checkpoint-family and --families name files of your ComfyUI: pass its --object-info too")
        from flowrl.params.model import load_params

        settings = load_params(params, profile) if model is None or params.exists() else None
        caps = ServingSettings.from_params(settings) if settings is not None else ServingSettings()
        read_prompts([prompt], caps.max_prompts_per_request, caps.max_prompt_chars)
        if model is None:
            model = f"models:/{settings.register.model_name}@{settings.register.champion_alias}"
        info = family_map = None
        if object_info is not None:
            from flowrl.comfy.families import FamilyMap
            from flowrl.comfy.object_info import load_object_info

            info = load_object_info(object_info)
            family_map = FamilyMap.from_arguments(info, checkpoint_family, families)
        generate = load_generator(model, params, profile)
        result: dict[str, Any] = (
            generate([prompt], gamma, seed, info) if info is not None else generate([prompt], gamma, seed)
        )[0]
        notes = (result.get("notes") or "").split("; ") if result.get("notes") else []
        if result["valid"] and family_map is not None:
            result, more = fit_to_family(result, family_map)
            notes += more
        for note in notes:
            typer.secho(f"note: {note}", err=True, fg=typer.colors.YELLOW)
        if not result["valid"]:
            fail(
                f"the model's flow is not a usable workflow: {result['error']}\nraw flow:\n{result['flow']}\n"
                "try another --seed, or a better-trained model",
                code=1,
            )
        if format is OutputFormat.ui:
            from flowrl.comfy.ui_export import api_to_ui

            write_or_print(api_to_ui(result["workflow"], source="generated workflow"), out, "generated workflow")
        else:
            write_or_print(result["workflow"], out, "generated workflow")
        if submit is not None:
            typer.echo(f"prompt_id: {submit_workflow(submit, result['workflow'])}")
    except FlowRLError as exc:
        fail(str(exc))
