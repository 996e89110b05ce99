//go:build !linux

package regtest

import "syscall"

func daemonSysProcAttr() *syscall.SysProcAttr { return nil }
