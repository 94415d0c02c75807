//go:build !windows

package smbpeer

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// runAs picks the account smbd runs as: the caller, or nobody for root.
func runAs() (name string, uid, gid int, cred *syscall.Credential, err error) {
	if os.Geteuid() == 0 {
		u, err := user.Lookup("nobody")
		if err != nil {
			return "", 0, 0, nil, fmt.Errorf("smbpeer: running as root, smbd drops to nobody, which is missing: %w", err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
		return u.Username, uid, gid, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
	}
	u, err := user.Current()
	if err != nil {
		return "", 0, 0, nil, err
	}
	return u.Username, os.Geteuid(), os.Getegid(), nil, nil
}

func procAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Credential: cred}
}

func terminateGroup(pid int) { syscall.Kill(-pid, syscall.SIGTERM) }
func killGroup(pid int)      { syscall.Kill(-pid, syscall.SIGKILL) }
