//go:build !linux

package local

import "syscall"

// childAttr puts a node in its own process group; without Pdeathsig outside
// Linux, nodes outlive a supervisor that is killed with SIGKILL.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
