"""Helpers shared by the bluegreen DAGs: the MLflow Connection and the iris data.

The controller calls live in the provider (`bluegreen.airflow`: `BluegreenReleaseOperator`,
`BluegreenRollbackOperator`, the `bluegreen_default` Connection of type `bluegreen`).

Import-cheap on purpose: the DAG processor imports this on every parse, so only the
standard library and `airflow.sdk` load at module level; `mlflow` and `sklearn` are
imported inside the functions that the tasks call.

Connection (never a URL in code): `mlflow_default`, the MLflow tracking server as host,
port, schema; or `{"tracking_uri": "..."}` in the extra. Login/password, when set, become
MLflow's basic-auth credentials. Without this Connection, `MLFLOW_TRACKING_URI` is used.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook
from airflow.sdk.exceptions import AirflowFailException, AirflowNotFoundException

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MLFLOW_CONN_ID = "mlflow_default"
EXPERIMENT = "bluegreen"


# -- Connection ---------------------------------------------------------------------------


def _base_url(conn: Any) -> str:
    """`scheme://host:port` from an HTTP-style Connection (host may carry its scheme)."""
    host = (conn.host or "").rstrip("/")
    if not host:
        raise AirflowFailException(f"Connection {conn.conn_id!r} has no host")
    if "://" not in host:
        host = f"{conn.schema or 'http'}://{host}"
    return f"{host}:{conn.port}" if conn.port else host


def mlflow_tracking_uri() -> str:
    """The tracking URI from the `mlflow_default` Connection, else `MLFLOW_TRACKING_URI`."""
    try:
        conn = BaseHook.get_connection(MLFLOW_CONN_ID)
    except AirflowNotFoundException:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            raise AirflowFailException(
                f"define the Connection {MLFLOW_CONN_ID!r} (or set MLFLOW_TRACKING_URI) "
                "to reach the MLflow tracking server"
            ) from None
        return uri
    if conn.login:
        # MLflow reads basic-auth credentials from the environment only; each Airflow
        # task runs in its own process, so this stays within the task.
        os.environ["MLFLOW_TRACKING_USERNAME"] = conn.login
        os.environ["MLFLOW_TRACKING_PASSWORD"] = conn.password or ""
    return conn.extra_dejson.get("tracking_uri") or _base_url(conn)


# -- data -----------------------------------------------------------------------------------


def iris_split() -> tuple[pd.DataFrame, pd.DataFrame, pd.Series, pd.Series]:
    """The iris train/holdout split, the same one in train and evaluate (fixed seed)."""
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    features, labels = load_iris(return_X_y=True, as_frame=True)
    return train_test_split(features, labels, test_size=0.3, random_state=7, stratify=labels)
