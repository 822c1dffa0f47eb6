"""Kubernetes backend tests against an API-server stand-in."""
