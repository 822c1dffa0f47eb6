// The pod sandbox ("pause") process of the sandbox's node: holds a pod's namespaces.
module bluegreen.local/kube-sandbox/pause

go 1.24.0
