"""Least privilege is enforced: a verb the Role lacks fails the release with a clear message.

The controller runs as the chart's ServiceAccount; the real API server authorizes every
call against the chart's Role (RBAC). With `patch` on Services taken out of the Role, the
release stages and verifies green, then the flip is refused: the operation must abort at
promote, say which verb on which resource was refused to whom, and leave traffic on blue.
"""

from __future__ import annotations

import pytest

from bluegreen.client import ControllerError
from tests.cluster.conftest import ClusterModels
from tests.cluster.release import ChartRelease
from tests.support.kube import wait_for


def test_denied_verb_fails_release_clearly(
    release: ChartRelease, values: dict, models: ClusterModels
) -> None:
    release.install(values)
    role_name = f"{release.name}-controller"
    role = release.kube.rbac.read_namespaced_role(role_name, release.namespace)
    rules = release.kube.api.sanitize_for_serialization(role.rules)
    for rule in rules:
        if rule["resources"] == ["services"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != "patch"]
    release.kube.rbac.patch_namespaced_role(role_name, release.namespace, {"rules": rules})
    wait_for(
        "the Role without services/patch",
        lambda: all(
            "patch" not in r.verbs
            for r in release.kube.rbac.read_namespaced_role(role_name, release.namespace).rules
            if r.resources == ["services"]
        ),
    )

    with pytest.raises(ControllerError) as denied:
        release.controller().switch(version=models.other)

    record = denied.value.body["operation"]
    assert record["status"] == "aborted" and record["failed_step"] == "promote", record
    reason = record["reason"]
    assert "403" in reason and "forbidden" in reason.lower(), reason
    assert 'cannot patch resource "services"' in reason, reason
    assert f"system:serviceaccount:{release.namespace}:{release.name}-controller" in reason
    assert release.live_color() == "blue"
    assert release.pinned("blue") == models.good
