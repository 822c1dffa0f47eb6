"""The release controller: resolve, stage, verify, promote and roll back MLflow versions.

`engine` is the release logic over the protocols in `ports`; adapters live beside it
(`mlflow_registry`, `smoke`) and per platform (`local/`, `kubernetes/`); `wiring` picks them.
"""
