"""The `flowrl` command line: the Typer apps (app) and one module per command group (flow, encode, generate, pipeline),
plus the training cost estimate (`python -m flowrl.cli.cost`, printed at the start of a training stage)."""
