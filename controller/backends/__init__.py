"""Backends that put a pinned version into a color: local processes, Kubernetes Deployments."""
