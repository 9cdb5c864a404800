// Command pause is the sandbox ("pause") container of the real-container test tier's nodes: it holds
// a pod's namespaces, reaps orphaned children and exits on SIGINT or SIGTERM. Built by
// tests/cluster/build.sh (target pause) and imported as an image by tests/containers/images.sh,
// because no registry is reachable to pull the upstream one.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
