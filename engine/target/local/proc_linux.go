//go:build linux

package local

import "syscall"

// childAttr makes a node die with its supervisor (Pdeathsig) and puts it in
// its own process group so that a terminal's Ctrl-C reaches only the
// supervisor, which then stops the nodes in order.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
