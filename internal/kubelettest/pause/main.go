// Command pause is the sandbox process of the test rig's pods: it holds the
// pod's namespaces and exits on SIGTERM or SIGINT. internal/kubelettest
// builds it statically and packs it with internal/ociimage as containerd's
// sandbox image.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}
