"""Cluster tier: the real chart with the real helm on the kube-sandbox."""
