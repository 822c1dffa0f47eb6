"""The release controller: resolve, stage, verify, promote and roll back MLflow versions."""
