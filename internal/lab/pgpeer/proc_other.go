//go:build !linux && !windows

package pgpeer

import "syscall"

func procAttr(cred *credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}
