//go:build linux

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rehost/rehost/appliance/internal/boot"
	"github.com/rehost/rehost/appliance/release"
	"github.com/rehost/rehost/appliance/status"
	"github.com/rehost/rehost/pkg/sshsig"
	"golang.org/x/sys/unix"
)

// statusFile is the appliance's report of itself (appliance/status), which
// `rehost serve --appliance-status` shows in its API and console.
const statusFile = "/data/appliance/status.json"

// Trial limits: a system on trial whose connector exits this many times,
// or does not answer /healthz within trialTimeout of the network being
// up, gives up its trial, and the next boot returns to the previous
// system.
const (
	trialExits   = 3
	trialTimeout = 5 * time.Minute
)

// abState is the A/B side of the appliance: which system runs, grubenv on
// the EFI system partition, and the report in statusFile.
type abState struct {
	slot    boot.Slot        // the system running (rehost.slot= from GRUB)
	running release.Manifest // this system's release
	key     ed25519.PublicKey
	keyErr  error

	mu         sync.Mutex
	report     status.Report
	trial      bool // this boot is a trial that has not yet proved itself
	exits      int  // connector exits during the trial
	lastExit   string
	trialEnded chan struct{}
}

func loadAB() *abState {
	ab := &abState{slot: boot.SlotA, trialEnded: make(chan struct{}, 1)}
	if v, ok := kernelArg("rehost.slot"); ok {
		if s, err := boot.ParseSlot(v); err == nil {
			ab.slot = s
		}
	}
	if b, err := os.ReadFile("/etc/rehost/release.json"); err == nil {
		json.Unmarshal(b, &ab.running)
	}
	b, err := os.ReadFile("/etc/rehost/release.pub")
	if err == nil {
		ab.key, err = sshsig.ParsePublicKey(b)
	}
	ab.keyErr = err
	return ab
}

// espDevice is the EFI system partition, where grubenv lives.
func espDevice(ctx context.Context) (string, error) {
	part, _, err := findPartition(ctx, boot.ESPName, 5*time.Second)
	return part, err
}

// readBootState reads grubenv from the EFI system partition, without
// mounting it.
func readBootState(ctx context.Context) (boot.State, error) {
	dev, err := espDevice(ctx)
	if err != nil {
		return boot.State{}, err
	}
	f, err := os.Open(dev)
	if err != nil {
		return boot.State{}, err
	}
	defer f.Close()
	ext, err := boot.LocateFAT(f, boot.EnvPath)
	if err != nil {
		return boot.State{}, fmt.Errorf("grubenv on %s: %w", dev, err)
	}
	b := make([]byte, boot.EnvSize)
	if _, err := f.ReadAt(b, ext.Offset); err != nil {
		return boot.State{}, fmt.Errorf("read grubenv on %s: %w", dev, err)
	}
	env, err := boot.ParseEnv(b)
	if err != nil {
		return boot.State{}, fmt.Errorf("grubenv on %s: %w", dev, err)
	}
	return boot.FromEnv(env), nil
}

// writeBootState rewrites grubenv in place (one block, the file's own
// clusters) and flushes it to the disk.
func writeBootState(ctx context.Context, s boot.State) error {
	b, err := s.Env().Marshal()
	if err != nil {
		return err
	}
	dev, err := espDevice(ctx)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	ext, err := boot.LocateFAT(f, boot.EnvPath)
	if err != nil {
		return fmt.Errorf("grubenv on %s: %w", dev, err)
	}
	if ext.Size != boot.EnvSize {
		return fmt.Errorf("grubenv on %s: %d bytes, want %d", dev, ext.Size, boot.EnvSize)
	}
	if _, err := f.WriteAt(b, ext.Offset); err != nil {
		return fmt.Errorf("write grubenv on %s: %w", dev, err)
	}
	return f.Sync()
}

// updateBootState reads, changes and writes grubenv.
func updateBootState(ctx context.Context, change func(*boot.State)) (boot.State, error) {
	s, err := readBootState(ctx)
	if err != nil {
		return s, err
	}
	change(&s)
	return s, writeBootState(ctx, s)
}

// saveReport changes the report and writes it.
func (a *appliance) saveReport(change func(*status.Report)) {
	ab := a.ab
	ab.mu.Lock()
	change(&ab.report)
	r := ab.report
	ab.mu.Unlock()
	if err := status.Write(statusFile, r); err != nil {
		a.logf("write %s: %v", statusFile, err)
	}
	a.showStatus(nil)
}

// startAB runs once the data partition is mounted: it reads the last
// report and grubenv and acts on what this boot is — the end of an
// interrupted write, a trial to watch, a failed trial to report.
func (a *appliance) startAB(ctx context.Context) {
	ab := a.ab
	prev, _ := status.Read(statusFile)
	fp := "(none: " + fmt.Sprint(ab.keyErr) + ")"
	if ab.keyErr == nil {
		fp = sshsig.Fingerprint(ab.key)
	}
	a.saveReport(func(r *status.Report) {
		*r = status.Report{Version: a.version, System: ab.slot.String(), SecureBoot: secureBoot(), SigningKey: fp,
			DevKey: ab.running.DevKey, Upgrade: prev.Upgrade}
	})
	s, err := readBootState(ctx)
	if err != nil {
		a.setProblem(fmt.Sprintf("boot loader state: %v — upgrades are off until this is fixed; see the support page of docs/appliance.md", err))
		return
	}
	up := prev.Upgrade
	switch s.AtBoot(ab.slot) {
	case boot.OnTrial:
		ab.mu.Lock()
		ab.trial = true
		ab.mu.Unlock()
		a.logf("system %s (version %s) runs on trial, boot %d of %d", ab.slot, a.version, s.TrialBoots(), boot.MaxTries)
		a.saveReport(func(r *status.Report) {
			if r.Upgrade == nil || r.Upgrade.To != a.version {
				r.Upgrade = &status.Upgrade{To: a.version, System: ab.slot.String()}
			}
			r.Upgrade.State, r.Upgrade.Reason, r.Upgrade.At = status.Trying, "", time.Now().UTC()
		})
		go a.watchTrial(ctx)
	case boot.TrialFailed:
		trial := s.Trial
		reason := fmt.Sprintf("the boot loader started system %s while system %s was on trial: %s could not be loaded, or %s was chosen at the boot menu",
			ab.slot, trial, trial, ab.slot)
		if s.TriesLeft == 0 {
			reason = fmt.Sprintf("system %s was started %d times and its connector never answered (it failed before it could say why: the kernel or the init)", trial, boot.MaxTries)
		}
		if up != nil && up.State == status.Failed && up.System == trial.String() && up.Reason != "" {
			reason = up.Reason
		}
		to := s.Versions[trial]
		if up != nil && up.To != "" {
			to = up.To
		}
		s.Abandon()
		if err := writeBootState(ctx, s); err != nil {
			a.logf("forget the failed trial in grubenv: %v", err)
		}
		a.logf("upgrade to %s rolled back: system %s runs again: %s", to, ab.slot, reason)
		a.saveReport(func(r *status.Report) {
			r.Upgrade = &status.Upgrade{State: status.RolledBack, From: a.version, To: to, System: trial.String(), Reason: reason, At: time.Now().UTC()}
		})
	default:
		if up != nil && up.State == status.Writing {
			a.saveReport(func(r *status.Report) {
				r.Upgrade.State, r.Upgrade.At = status.Interrupted, time.Now().UTC()
				r.Upgrade.Reason = fmt.Sprintf("the appliance stopped while system %s was being written (a power loss or a reset); system %s kept running and %s holds nothing usable: run the upgrade again", up.System, ab.slot, up.System)
			})
		}
	}
}

// onTrial reports whether this boot is a trial not yet decided.
func (ab *abState) onTrial() bool {
	ab.mu.Lock()
	defer ab.mu.Unlock()
	return ab.trial
}

// serveExited is the supervisor's report of a connector exit (code its
// exit status): during a trial the third one ends it; after a rollback, a
// connector refusing the store a failed trial migrated gets the copy from
// before that trial back.
func (a *appliance) serveExited(why string, code int) {
	ab := a.ab
	ab.mu.Lock()
	if !ab.trial {
		up := ab.report.Upgrade
		ab.mu.Unlock()
		if code == exitStateNew && up != nil && up.State == status.RolledBack {
			a.restorePreTrialState(up.To)
		}
		return
	}
	ab.exits++
	ab.lastExit = why
	n := ab.exits
	ab.mu.Unlock()
	if n >= trialExits {
		select {
		case ab.trialEnded <- struct{}{}:
		default:
		}
	}
}

// watchTrial decides the trial of this system: confirmed when the
// connector answers /healthz with this version (it opened the state, its
// schema migrated), given up when the connector keeps exiting or stays
// silent, and then the appliance reboots into the previous system.
func (a *appliance) watchTrial(ctx context.Context) {
	ab := a.ab
	// The connector's third exit ends the trial at once, even before the
	// network is up: waiting would let the supervisor restart it again.
	ended := func() {
		ab.mu.Lock()
		why := fmt.Sprintf("its connector exited %d times (%s); see rehost.log in the support bundle", ab.exits, ab.lastExit)
		ab.mu.Unlock()
		a.giveUpTrial(ctx, why)
	}
	select {
	case <-a.net.ready:
	case <-time.After(60 * time.Second):
	case <-ab.trialEnded:
		ended()
		return
	case <-ctx.Done():
		return
	}
	deadline := time.After(trialTimeout)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ab.trialEnded:
			ended()
			return
		case <-deadline:
			a.giveUpTrial(ctx, fmt.Sprintf("its connector did not answer /healthz within %s", trialTimeout))
			return
		case <-tick.C:
			if err := localHealth(ctx, a.version); err == nil {
				a.confirmTrial(ctx)
				return
			}
		}
	}
}

// localHealth asks the connector on this machine for /healthz.
func localHealth(ctx context.Context, version string) error {
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		// The connector's own certificate, on loopback: nothing to verify.
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	}}
	req, _ := http.NewRequestWithContext(ctx, "GET", "https://127.0.0.1:443/healthz", nil)
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var h struct {
		Status, Version string
	}
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return err
	}
	if resp.StatusCode != 200 || h.Status != "ok" || h.Version != version {
		return fmt.Errorf("healthz: %s, %+v", resp.Status, h)
	}
	return nil
}

func (a *appliance) confirmTrial(ctx context.Context) {
	ab := a.ab
	if _, err := updateBootState(ctx, func(s *boot.State) { s.Confirm(ab.slot) }); err != nil {
		// Left on trial: the next boot tries it again, then falls back.
		a.setProblem(fmt.Sprintf("the upgrade works but could not be made the default: %v", err))
		return
	}
	ab.mu.Lock()
	ab.trial = false
	ab.mu.Unlock()
	a.logf("system %s (version %s) proved itself: it is the default system now", ab.slot, a.version)
	a.saveReport(func(r *status.Report) {
		if r.Upgrade != nil {
			r.Upgrade.State, r.Upgrade.Reason, r.Upgrade.At = status.Installed, "", time.Now().UTC()
		}
	})
}

// giveUpTrial ends a failed trial: grubenv gets no more trial boots, the
// report says why, and the appliance reboots into the previous system,
// which reports the rollback.
func (a *appliance) giveUpTrial(ctx context.Context, why string) {
	ab := a.ab
	reason := fmt.Sprintf("system %s (version %s) gave up its trial: %s", ab.slot, a.version, why)
	a.logf("%s; rebooting into the previous system", reason)
	a.saveReport(func(r *status.Report) {
		if r.Upgrade == nil {
			r.Upgrade = &status.Upgrade{To: a.version, System: ab.slot.String()}
		}
		r.Upgrade.State, r.Upgrade.Reason, r.Upgrade.At = status.Failed, reason, time.Now().UTC()
	})
	if _, err := updateBootState(ctx, func(s *boot.State) { s.GiveUp() }); err != nil {
		a.logf("end the trial in grubenv: %v (the boot loader uses up its trial boots instead)", err)
	}
	a.say("\nrehost connector: the upgrade failed: %s.\nReturning to the previous system…\n", reason)
	select {
	case a.power <- true:
	default:
	}
}

// secureBoot is what the kernel said about Secure Boot at boot ("Secure
// boot enabled" or "disabled", in its log).
func secureBoot() string {
	if _, err := os.Stat("/sys/firmware/efi"); errors.Is(err, os.ErrNotExist) {
		return "not UEFI"
	}
	// /dev/kmsg gives one record per read, from the start of the log;
	// without blocking it ends with EAGAIN once drained.
	fd, err := unix.Open("/dev/kmsg", unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return "unknown"
	}
	defer unix.Close(fd)
	buf := make([]byte, 8192)
	for {
		n, err := unix.Read(fd, buf)
		if err == unix.EPIPE { // a record overwritten while reading
			continue
		}
		if err != nil || n <= 0 {
			return "unknown"
		}
		line := string(buf[:n])
		switch {
		case strings.Contains(line, "Secure boot enabled"):
			return "enabled"
		case strings.Contains(line, "Secure boot disabled"):
			return "disabled"
		}
	}
}

// statusLines are the console's lines on the system, Secure Boot, the
// release key and the last upgrade.
func (ab *abState) statusLines() string {
	ab.mu.Lock()
	r := ab.report
	trial := ab.trial
	ab.mu.Unlock()
	if r.System == "" {
		return ""
	}
	var b strings.Builder
	sys := "System " + r.System
	if trial {
		sys += " (on trial: becomes the default once the connector answers)"
	}
	fmt.Fprintf(&b, "   System:       %s; Secure Boot: %s\n", sys, r.SecureBoot)
	key := r.SigningKey
	if r.DevKey {
		key += " — DEVELOPMENT KEY: public, anyone can sign upgrades; not for production"
	}
	fmt.Fprintf(&b, "   Release key:  %s\n", key)
	if u := r.Upgrade; u != nil {
		line := fmt.Sprintf("to %s (system %s) %s at %s", u.To, u.System, u.State, u.At.Format("2006-01-02 15:04Z"))
		if u.Reason != "" {
			line += ": " + u.Reason
		}
		fmt.Fprintf(&b, "   Last upgrade: %s\n", line)
	}
	return b.String()
}

// keepPreTrialState copies the store, the connector stopped, as the
// appliance shuts down to boot a system on trial.
func (a *appliance) keepPreTrialState() {
	if a.ab.onTrial() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := readBootState(ctx)
	if err != nil || s.Trial == "" || s.Trial == a.ab.slot {
		return
	}
	if err := copyPreTrial(stateDir, preTrialDir); err != nil {
		a.logf("keep a copy of the store before the trial of system %s: %v", s.Trial, err)
		return
	}
	a.logf("a copy of the store before the trial of system %s is in %s", s.Trial, preTrialDir)
}

// restorePreTrialState puts back the store copied before the failed
// trial of version to, setting aside the store that trial migrated.
func (a *appliance) restorePreTrialState(to string) {
	aside := "/data/upgrade/state-from-" + strings.NewReplacer("/", "_", " ", "_").Replace(to)
	ok, err := swapInPreTrial(stateDir, preTrialDir, aside)
	if err != nil {
		a.setProblem(fmt.Sprintf("the state was migrated by %s, which was rolled back, and putting back the copy from before it failed: %v — restore a backup (menu 11)", to, err))
		return
	}
	if !ok {
		a.setProblem(fmt.Sprintf("the state was migrated by %s, which was rolled back, and no copy from before it is left — restore a backup (menu 11) or upgrade to a fixed release", to))
		return
	}
	a.logf("the store %s migrated is set aside in %s; the copy from before its trial is back", to, aside)
	a.saveReport(func(r *status.Report) {
		if r.Upgrade != nil {
			r.Upgrade.Reason += fmt.Sprintf("; it had migrated the state, which is set aside in %s, and the state from before the upgrade is back", aside)
		}
	})
}
