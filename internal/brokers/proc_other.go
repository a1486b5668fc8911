//go:build !linux

package brokers

import "syscall"

// brokerAttr puts a broker in its own process group; without Pdeathsig
// outside Linux, a broker outlives a supervisor killed with SIGKILL.
func brokerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
