package pgpeer

import (
	"errors"
	"os"
	"syscall"
)

type credential struct{}

// The lab's PostgreSQL is Debian's; a Windows host runs its own.
func runAs() (int, int, *credential, error) {
	return 0, 0, nil, errors.New("pgpeer: the lab's PostgreSQL runs on Linux")
}

func procAttr(*credential) *syscall.SysProcAttr { return nil }
func interrupt(p *os.Process)                   { p.Kill() }
