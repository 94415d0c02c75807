package pgpeer

import "syscall"

// procAttr runs the server as cred, in a process group of its own, and has
// the kernel stop it (fast shutdown) when the process that started it dies.
func procAttr(cred *credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred, Pdeathsig: syscall.SIGINT}
}
