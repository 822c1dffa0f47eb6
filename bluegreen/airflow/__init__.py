"""The bluegreen Airflow provider, installed with `pip install 'bluegreen[airflow]'`.

Airflow finds it through the `apache_airflow_provider` entry point, which names
`get_provider_info` below: the `bluegreen` connection type (host = the controller's URL,
password = its API token) and where the hook, operators, sensor and trigger live.

    bluegreen.airflow.hooks      BluegreenHook: a Connection -> the controller client
    bluegreen.airflow.operators  BluegreenReleaseOperator (deferrable), BluegreenRollbackOperator
    bluegreen.airflow.sensors    BluegreenPausedSensor (deferrable): a release waits for approval
    bluegreen.airflow.triggers   BluegreenOperationTrigger: the waits, run by the triggerer
    bluegreen.airflow.records    what a controller answer means for a task (pure)

Every Airflow process loads `get_provider_info`, so this module imports nothing.
"""

from __future__ import annotations

from typing import Any

CONN_TYPE = "bluegreen"
DEFAULT_CONN_ID = "bluegreen_default"
_INTEGRATION = "bluegreen"


def get_provider_info() -> dict[str, Any]:
    """The provider's description, as `airflow/provider_info.schema.json` defines it."""
    return {
        "package-name": "bluegreen",
        "name": "bluegreen",
        "description": "Zero-downtime blue/green releases of MLflow model versions: "
        "a hook, deferrable release and rollback operators, and a sensor for paused releases.",
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "tags": ["software"],
            }
        ],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": "bluegreen.airflow.hooks.BluegreenHook",
                "hook-name": "bluegreen controller",
                # Declarative, so the UI draws the form without importing the hook.
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"host": "Controller URL", "password": "API token"},
                    "placeholders": {
                        "host": "http://iris-controller.ml.svc:80",
                        "password": "the controller's BLUEGREEN_TOKEN (optional)",
                    },
                },
            }
        ],
        "hooks": [
            {"integration-name": _INTEGRATION, "python-modules": ["bluegreen.airflow.hooks"]}
        ],
        "operators": [
            {"integration-name": _INTEGRATION, "python-modules": ["bluegreen.airflow.operators"]}
        ],
        "sensors": [
            {"integration-name": _INTEGRATION, "python-modules": ["bluegreen.airflow.sensors"]}
        ],
        "triggers": [
            {"integration-name": _INTEGRATION, "python-modules": ["bluegreen.airflow.triggers"]}
        ],
    }
