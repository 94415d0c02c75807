//go:build !windows

package hyperv

import "errors"

// newWMI is the Windows build's (wmi_windows.go).
func newWMI(Config) (control, func() files, error) {
	return nil, nil, errors.New("the wmi transport drives the local host and exists only in the Windows build of rehost; use winrm")
}
