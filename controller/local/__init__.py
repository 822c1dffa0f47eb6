"""The controller's adapters for one machine: process colors, the local router's admin API,
the file journal and the file lock. Built by `controller.wiring` when the backend is `local`.
"""
