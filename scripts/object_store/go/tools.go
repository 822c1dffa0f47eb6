//go:build tools

// Package tools pins SeaweedFS so `go build github.com/seaweedfs/seaweedfs/weed` builds
// exactly the version in go.mod.
package tools

import _ "github.com/seaweedfs/seaweedfs/weed"
