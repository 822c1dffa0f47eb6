"""Debian's `prometheus` for the tests: scrapes given targets every second, loads the chart's
rules file, listens on loopback. `promtool` (same package) lints rules and metric texts."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from plumbing.processes import spawn, stop, wait_http_ok
from tests.support.ports import free_port

_CHART_FILES = Path(__file__).resolve().parents[2] / "helm/bluegreen/files"
RULES = _CHART_FILES / "prometheus/rules.yml"
DASHBOARD = _CHART_FILES / "grafana/bluegreen-dashboard.json"


def dashboard_queries(model: str) -> dict[str, str]:
    """Every PromQL query of the Grafana dashboard (panels, annotations, and its query
    variables' `label_values(metric, label)` as the PromQL Grafana asks: the label's values
    on that metric), by where it sits, with the dashboard's `$model` variable set to `model`."""
    import json

    board = json.loads(DASHBOARD.read_text())
    queries = {
        f"panel {panel['title']!r} {target['refId']}": target["expr"]
        for panel in board["panels"]
        for target in panel["targets"]
    }
    for note in board["annotations"]["list"]:
        queries[f"annotation {note['name']!r}"] = note["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            found = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\)\s*", text)
            if found is None:
                raise ValueError(f"variable {variable['name']!r}: {text!r} is no label_values")
            metric, label = found.groups()
            queries[f"variable {variable['name']!r}"] = f"group by ({label}) ({metric})"
    return {where: expr.replace('"$model"', f'"{model}"') for where, expr in queries.items()}


def binary(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} missing: apt-get install prometheus")
    return found


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`promtool ARGS...` with its output captured as text; a minute at most."""
    return subprocess.run(
        [binary("promtool"), *args], input=stdin, capture_output=True, text=True, timeout=60
    )


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        answer.raise_for_status()
        body = answer.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/alerts", timeout=10).json()
        alerts: list[dict[str, Any]] = answer["data"]["alerts"]
        return alerts

    def stop(self) -> None:
        stop(self.process)


def start_prometheus(root: Path, targets: dict[str, list[str]]) -> Prometheus:
    """`targets`: job name -> host:port list. Scrape and rule evaluation every second."""
    root.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES)],
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": hosts}]}
            for job, hosts in targets.items()
        ],
    }
    (root / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port("127.0.0.1")
    process = spawn(
        [
            binary("prometheus"),
            f"--config.file={root / 'prometheus.yml'}",
            f"--storage.tsdb.path={root / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        env={"PATH": "/usr/bin:/bin", "HOME": str(root)},
        log_path=root / "prometheus.log",
    )
    url = f"http://127.0.0.1:{port}"
    wait_http_ok(f"{url}/-/ready", timeout_s=60, process=process, what="prometheus")
    return Prometheus(url=url, process=process)
