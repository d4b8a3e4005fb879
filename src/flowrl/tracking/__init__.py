"""MLflow: a run per stage (runs), the registered pyfunc model and its promotion (registry, pyfunc) and the artifact
store (storage)."""
