// The real node's sandbox ("pause") image: it holds a pod's namespaces and sleeps until told to stop.
// registry.k8s.io/pause cannot be pulled here (no registry is reachable), so build-node.sh builds this statically
// and mmft_localcluster.node_image wraps it in an image of one file. Standard library only: `go build pause.go`.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGINT, syscall.SIGTERM)
	// As PID 1 of the sandbox it inherits orphaned processes: reap them so they do not linger as zombies.
	children := make(chan os.Signal, 1)
	signal.Notify(children, syscall.SIGCHLD)
	for {
		select {
		case <-stop:
			return
		case <-children:
			for {
				pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
				if pid <= 0 || err != nil {
					break
				}
			}
		}
	}
}
