// Command pause holds a pod's namespaces until it is told to stop, as the upstream
// registry.k8s.io/pause does; built here so the node needs no registry.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	// Orphans re-parented to PID 1 are reaped; their status is of no interest.
	signal.Ignore(syscall.SIGCHLD)
	<-stop
}
