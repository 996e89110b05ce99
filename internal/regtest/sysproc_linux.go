//go:build linux

package regtest

import "syscall"

// daemonSysProcAttr asks the kernel to SIGTERM a daemon if the process that
// started it dies without calling Close, so test crashes leave no orphans.
func daemonSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
