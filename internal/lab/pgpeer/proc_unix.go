//go:build !windows

package pgpeer

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

type credential = syscall.Credential

// runAs picks the account the server runs as: the caller, or for root the
// postgres account (nobody if there is none), since postgres refuses root.
func runAs() (uid, gid int, cred *credential, err error) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid(), nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		if u, err = user.Lookup("nobody"); err != nil {
			return 0, 0, nil, fmt.Errorf("pgpeer: running as root, postgres must drop to the postgres or nobody account, and neither exists: %w", err)
		}
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), NoSetGroups: true}, nil
}

func interrupt(p *os.Process) { p.Signal(syscall.SIGINT) }
