"""The controller's adapters for Kubernetes: Deployment colors, the live Service's selector,
the ConfigMap journal and the Lease lock, over the API plumbing in `api`. Built by
`controller.wiring` when the backend is `kubernetes`.
"""
