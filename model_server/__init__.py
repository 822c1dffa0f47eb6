"""The model server: one process (or pod) per color, serving exactly one pinned MLflow version."""
