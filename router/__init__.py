"""The local router: a process of its own standing in for the live Kubernetes Service.

Proxies every request to the live color and flips on a conditional admin call. On
Kubernetes the live Service is the router and this package does not run.
"""
