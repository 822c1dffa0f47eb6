//go:build tools

// Package tools pins the control-plane commands this module builds, so that
// `go mod tidy` records every module they need in go.sum.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
)
