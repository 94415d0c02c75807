//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// appliance is the init's state, shared by the menu, the network, the time
// and the connector's supervisor.
type appliance struct {
	version  string
	consoles []*console
	power    chan bool // from the power button: false = power off

	mu       sync.Mutex
	settings settings
	problem  string // shown on the console while not empty
	served   string // the connector's state, for the console
	ntp      string
	net      *network

	logMu   sync.Mutex
	log     *os.File
	early   bytes.Buffer // log lines from before the data partition is mounted
	serveMu sync.Mutex
	serve   *serveProc
	held    chan struct{} // set while a restore keeps the connector stopped

	ab *abState
}

func newAppliance() *appliance {
	v, _ := os.ReadFile("/etc/rehost/version")
	a := &appliance{version: strings.TrimSpace(string(v)), power: make(chan bool, 1), served: "starting"}
	if a.version == "" {
		a.version = "unknown"
	}
	a.net = &network{a: a}
	return a
}

// console is one of the appliance's terminals.
type console struct {
	name string
	f    *os.File
	mu   sync.Mutex
}

// openConsoles opens the VGA console and the first serial port; a VM
// without a serial port simply has no ttyS0 to write to.
func (a *appliance) openConsoles() {
	for _, name := range []string{"tty1", "ttyS0"} {
		f, err := os.OpenFile("/dev/"+name, os.O_RDWR|unix.O_NOCTTY, 0)
		if err != nil {
			continue
		}
		if name == "ttyS0" {
			// A serial port the VM lacks answers with an error; keep only
			// a port that takes a write.
			if _, err := f.Write([]byte("\r\n")); err != nil {
				f.Close()
				continue
			}
		}
		a.consoles = append(a.consoles, &console{name: name, f: f})
	}
}

// say writes to every console.
func (a *appliance) say(format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "\r\n")
	for _, c := range a.consoles {
		c.mu.Lock()
		c.f.WriteString(msg)
		c.mu.Unlock()
	}
}

func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.f.WriteString(strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "\r\n"))
}

// logf appends a line to the appliance's log (/data/log/appliance.log).
func (a *appliance) logf(format string, args ...any) {
	up, _ := os.ReadFile("/proc/uptime")
	upSec, _, _ := strings.Cut(string(up), " ")
	line := fmt.Sprintf("%s [%8ss] %s\n", time.Now().UTC().Format(time.RFC3339), upSec, fmt.Sprintf(format, args...))
	a.logMu.Lock()
	defer a.logMu.Unlock()
	if a.log != nil {
		// Few lines, each worth keeping across a hard reset.
		a.log.WriteString(line)
		a.log.Sync()
	} else if a.early.Len() < 1<<20 {
		a.early.WriteString(line)
	}
}

// openLog opens the log on the data partition, keeping the previous one
// when it has grown past 4 MiB, and writes the lines logged so far.
func (a *appliance) openLog() {
	os.MkdirAll(logDir, 0o755)
	p := filepath.Join(logDir, "appliance.log")
	rotate(p, 4<<20)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return
	}
	a.logMu.Lock()
	f.Write(a.early.Bytes())
	a.early.Reset()
	a.log = f
	a.logMu.Unlock()
}

func (a *appliance) closeLog() {
	a.logMu.Lock()
	defer a.logMu.Unlock()
	if a.log != nil {
		a.log.Sync()
		a.log.Close()
		a.log = nil
	}
}

// rotate moves path to path.1 when it is larger than max.
func rotate(path string, max int64) {
	if st, err := os.Stat(path); err == nil && st.Size() > max {
		os.Rename(path, path+".1")
	}
}

func (a *appliance) setProblem(p string) {
	a.mu.Lock()
	a.problem = p
	a.mu.Unlock()
	a.logf("problem: %s", p)
	a.showStatus(nil)
}
