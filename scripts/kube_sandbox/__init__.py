"""kube-sandbox: a real Kubernetes control plane on one machine, for the tests.

etcd, kube-apiserver and kube-controller-manager are the real binaries, built from the
official Go modules (``build``). The kubelet (``kubelet``, ``pod``, ``probes``, ``podexec``)
and kube-proxy (``proxy``) are stood in by Python processes that use the official
``kubernetes`` client. The ``supervisor`` runs all of it in the background; ``__main__`` is
the command line (``scripts/kube-sandbox``); ``fixture`` is what tests import.

See docs/kube-sandbox.md.
"""
