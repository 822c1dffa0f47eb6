"""Free TCP ports on loopback for test servers."""

from plumbing.processes import free_port as free_port
