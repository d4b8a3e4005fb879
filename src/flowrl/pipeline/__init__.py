"""The pipeline's shape: every stage declared once (stages), the per-stage params views (stage_params, the `params`
stage), the files generated from the declarations (files: dvc.yaml, docs/architecture.md), the code each stage
runs (code_deps) and the README figures from the stage metrics (figures)."""
