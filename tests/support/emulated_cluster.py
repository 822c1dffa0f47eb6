"""Names the emulated-cluster tests (`tests/kubernetes/`) install their release under."""

NAMESPACE = "bluegreen-test"
RELEASE = "bg"
IN_CLUSTER_COLOR_URL = "http://{release}-{color}.{namespace}.svc:80"
