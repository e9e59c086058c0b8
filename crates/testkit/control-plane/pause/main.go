// The node's sandbox ("pause") container: it holds a Pod's namespaces and does nothing
// else. Built here because no registry is reachable to pull registry.k8s.io/pause.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// As PID 1 of the sandbox it also reaps orphans; Go's runtime does not, so ask the
	// kernel to (SIGCHLD ignored means children are reaped automatically).
	signal.Ignore(syscall.SIGCHLD)
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	<-stop
}
