// pause holds a pod's namespaces open for as long as the pod lives: the
// sandbox container every Kubernetes pod starts first. It does nothing but
// wait; as PID 1 of a pod that shares its process namespace it also reaps the
// orphans that are handed to it; SIGTERM or SIGINT ends it (exit 0), which is
// how the container runtime stops the sandbox.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: pause (no arguments): holds a pod's namespaces until SIGTERM or SIGINT")
		os.Exit(2)
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		// Reap every child that has exited; WNOHANG: never block here.
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
