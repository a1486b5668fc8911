//go:build linux

package brokers

import "syscall"

// brokerAttr makes a broker die with the process that started it
// (Pdeathsig), even when that process is killed or crashes, and puts it in
// its own process group so that a terminal's Ctrl-C reaches only its
// supervisor, which stops it in order.
func brokerAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
}
