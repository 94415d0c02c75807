//go:build windows

package smbpeer

import (
	"errors"
	"syscall"
)

// Samba runs on Linux; a Windows host has its own SMB server.
func runAs() (string, int, int, *syscall.SysProcAttr, error) {
	return "", 0, 0, nil, errors.New("smbpeer: Samba is a Linux peer")
}

func procAttr(attr *syscall.SysProcAttr) *syscall.SysProcAttr { return attr }
func terminateGroup(int)                                      {}
func killGroup(int)                                           {}
