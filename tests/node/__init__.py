"""Node tier: the real chart on a real single node (kubelet, containerd, kube-proxy, CoreDNS)."""
