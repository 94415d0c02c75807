//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type serveProc struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// superviseServe runs `rehost serve` on the data partition's state
// directory and restarts it when it exits, backing off to a minute. It
// waits for the network first, so the certificate the connector makes on
// its first start names the appliance's address.
func (a *appliance) superviseServe(ctx context.Context) {
	select {
	case <-a.net.ready:
	case <-time.After(60 * time.Second):
	case <-ctx.Done():
		return
	}
	backoff := 2 * time.Second
	for ctx.Err() == nil {
		if !a.waitHeld(ctx) {
			return
		}
		logPath := filepath.Join(logDir, "rehost.log")
		rotate(logPath, 16<<20)
		lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			a.setServed("cannot open its log: " + err.Error())
			sleep(ctx, time.Minute)
			continue
		}
		cmd := exec.Command(rehostBin, "serve", "--state-dir", stateDir, "--listen", ":443", "--appliance-status", statusFile)
		cmd.Env = []string{"PATH=/bin:/sbin", "HOME=" + stateDir, "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
		cmd.Stdout, cmd.Stderr = lf, lf
		cmd.SysProcAttr = &unix.SysProcAttr{Setsid: true}
		started := time.Now()
		if err := cmd.Start(); err != nil {
			lf.Close()
			a.setServed("cannot start: " + err.Error())
			sleep(ctx, time.Minute)
			continue
		}
		p := &serveProc{cmd: cmd, done: make(chan struct{})}
		a.serveMu.Lock()
		a.serve = p
		a.serveMu.Unlock()
		a.setServed(fmt.Sprintf("running (pid %d)", cmd.Process.Pid))
		a.logf("rehost serve started, pid %d", cmd.Process.Pid)
		go a.awaitCertificate(ctx, p.done)
		err = cmd.Wait()
		close(p.done)
		lf.Close()
		if ctx.Err() != nil {
			return
		}
		if time.Since(started) > 5*time.Minute {
			backoff = 2 * time.Second
		}
		a.logf("rehost serve exited: %v; restarting in %s (see %s)", err, backoff, logPath)
		code := -1
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		}
		a.serveExited(fmt.Sprintf("%v: %s", err, lastLine(logPath)), code)
		a.setServed(fmt.Sprintf("exited (%v), restarting in %s — see %s", err, backoff, logPath))
		if !sleep(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, time.Minute)
	}
}

// awaitCertificate shows the status again once the connector has made or
// loaded its certificate.
func (a *appliance) awaitCertificate(ctx context.Context, done <-chan struct{}) {
	for i := 0; i < 600; i++ {
		if fingerprint() != "" {
			a.showStatus(nil)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopServe asks the connector to stop (SIGTERM: it finishes the step in
// hand and records where it was) and kills it after timeout.
func (a *appliance) stopServe(timeout time.Duration) {
	a.serveMu.Lock()
	p := a.serve
	a.serveMu.Unlock()
	if p == nil {
		return
	}
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(unix.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (a *appliance) setServed(s string) {
	a.mu.Lock()
	a.served = s
	a.mu.Unlock()
	a.showStatus(nil)
}

// fingerprint is the SHA-256 of the connector's certificate
// (<state>/tls/cert.pem) as `rehost serve` prints it: upper-case hex pairs
// joined by colons; "" while there is none.
func fingerprint() string {
	b, err := os.ReadFile(filepath.Join(stateDir, "tls", "cert.pem"))
	if err != nil {
		return ""
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return ""
	}
	sum := sha256.Sum256(blk.Bytes)
	parts := make([]string, len(sum))
	for i, c := range sum {
		parts[i] = fmt.Sprintf("%02X", c)
	}
	return strings.Join(parts, ":")
}

// lastLine is the last non-empty line of the file at path (at most its
// last 4 KiB are read): what the connector said as it exited.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, st.Size()-4096)
	b := make([]byte, st.Size()-off)
	n, _ := f.ReadAt(b, off)
	lines := strings.Split(strings.TrimSpace(string(b[:n])), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
