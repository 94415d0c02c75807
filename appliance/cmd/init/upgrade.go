//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/rehost/rehost/appliance/internal/boot"
	"github.com/rehost/rehost/appliance/release"
	"github.com/rehost/rehost/appliance/status"
	"golang.org/x/sys/unix"
)

// menuUpgrade installs a new release's rehost-connector-system.img into
// the system partition not running, after checking its signed manifest,
// and arms it for a trial at the next boot. The running system and the
// state are not touched: a failure at any point leaves the appliance as
// it was.
func (a *appliance) menuUpgrade(ctx context.Context, c *console, ask func(string) (string, bool)) {
	ab := a.ab
	if ab.keyErr != nil {
		c.printf("Upgrades are off: this system has no release key (%v).\n", ab.keyErr)
		return
	}
	if ab.onTrial() {
		c.printf("This system is on trial and has not proved itself yet: wait for it (the status says when), then upgrade.\n")
		return
	}
	url, _ := ask("URL of rehost-connector-system.img (http:// or https://; its signed manifest URL.json is read first): ")
	if url == "" {
		return
	}
	if !strings.HasPrefix(url, "https://") && !strings.HasPrefix(url, "http://") {
		c.printf("Want an http:// or https:// URL.\n")
		return
	}
	m, err := a.fetchManifest(ctx, url)
	if err != nil {
		c.printf("Refused, nothing was changed: %v\n", err)
		a.logf("upgrade from %s refused: %v", url, err)
		return
	}
	target := ab.slot.Other()
	part, _, err := findPartition(ctx, target.PartName(), time.Second)
	if err != nil {
		c.printf("Refused, nothing was changed: %v\n", err)
		return
	}
	psize, err := partSize(part)
	if err != nil {
		c.printf("Refused, nothing was changed: %v\n", err)
		return
	}
	downgrade := false
	if err := release.Check(ab.running, m, psize, false); err != nil {
		if !errors.Is(err, release.ErrOlder) {
			c.printf("Refused, nothing was changed: %v\n", err)
			a.logf("upgrade to %s refused: %v", m.Version, err)
			return
		}
		v, _ := ask(fmt.Sprintf("Version %s (built %s) is older than the running %s (built %s).\nType DOWNGRADE to install it anyway: ",
			m.Version, m.Built().Format(time.DateOnly), ab.running.Version, ab.running.Built().Format(time.DateOnly)))
		if v != "DOWNGRADE" {
			c.printf("Refused, nothing was changed: %v\n", err)
			a.logf("upgrade to %s refused: %v", m.Version, err)
			return
		}
		downgrade = true
	}
	c.printf("Version %s (built %s), signed with this appliance's release key: writing it into system %s (system %s keeps running).\n",
		m.Version, m.Built().Format(time.DateOnly), target, ab.slot)
	if err := a.install(ctx, c, url, m, target, part, psize); err != nil {
		c.printf("Upgrade failed; system %s is unchanged and boots as before: %v\n", ab.slot, err)
		a.logf("upgrade to %s failed: %v", m.Version, err)
		a.saveReport(func(r *status.Report) {
			r.Upgrade = &status.Upgrade{State: status.Interrupted, From: a.version, To: m.Version, System: target.String(),
				Reason: err.Error(), At: time.Now().UTC()}
		})
		return
	}
	what := "upgrade"
	if downgrade {
		what = "downgrade"
	}
	a.logf("%s to %s written into system %s and armed for a trial", what, m.Version, target)
	if v, _ := ask(fmt.Sprintf("System %s holds %s. The next boot starts it on trial: it becomes the default once its connector answers;\n"+
		"otherwise (up to %d boots) system %s returns. Reboot now? [y/N] ", target, m.Version, boot.MaxTries, ab.slot)); strings.EqualFold(v, "y") {
		select {
		case a.power <- true:
		default:
		}
	}
}

// fetchManifest reads URL.json and URL.json.sig and checks the signature
// with the release key in the initramfs.
func (a *appliance) fetchManifest(ctx context.Context, url string) (release.Manifest, error) {
	b, err := fetchSmall(ctx, url+".json")
	if err != nil {
		return release.Manifest{}, fmt.Errorf("read the image's manifest: %w", err)
	}
	sig, err := fetchSmall(ctx, url+".json.sig")
	if err != nil && !strings.Contains(err.Error(), "404") {
		return release.Manifest{}, fmt.Errorf("read the manifest's signature: %w", err)
	}
	return release.Open(b, sig, a.ab.key)
}

// install writes the image into target: grubenv first makes the running
// system the default with no trial (a power loss from here on boots it
// again), then the image streams from url into the partition while it is
// hashed, then the partition is read back and hashed again, and only then
// is target armed.
func (a *appliance) install(ctx context.Context, c *console, url string, m release.Manifest, target boot.Slot, part string, psize int64) error {
	ab := a.ab
	if _, err := updateBootState(ctx, func(s *boot.State) { s.BeginWrite(ab.slot, target) }); err != nil {
		return fmt.Errorf("prepare the boot loader: %w", err)
	}
	a.saveReport(func(r *status.Report) {
		r.Upgrade = &status.Upgrade{State: status.Writing, From: a.version, To: m.Version, System: target.String(), At: time.Now().UTC()}
	})
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: 30 * time.Minute}).Do(req)
	if err != nil {
		return fmt.Errorf("download %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	dev, err := os.OpenFile(part, os.O_RDWR|unix.O_EXCL, 0)
	if err != nil {
		return err
	}
	defer dev.Close()
	h := sha256.New()
	pw := &progress{c: c, what: "Writing system " + target.String(), total: m.Size}
	n, err := io.Copy(io.MultiWriter(dev, h, pw), io.LimitReader(resp.Body, m.Size+1))
	if err != nil {
		return fmt.Errorf("write %s from %s: %w", part, url, err)
	}
	if n != m.Size {
		return fmt.Errorf("the download has %d bytes, the manifest says %d", n, m.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return fmt.Errorf("the download's SHA-256 is %s, not the manifest's %s", got, m.SHA256)
	}
	// Zero what an earlier, larger image left past the end.
	if rest := psize - n; rest > 0 {
		if _, err := io.Copy(dev, io.LimitReader(zeros{}, rest)); err != nil {
			return fmt.Errorf("clear the rest of %s: %w", part, err)
		}
	}
	if err := dev.Sync(); err != nil {
		return err
	}
	unix.IoctlSetInt(int(dev.Fd()), unix.BLKFLSBUF, 0)
	c.printf("Checking what was written…\n")
	h.Reset()
	if _, err := io.Copy(h, io.NewSectionReader(dev, 0, m.Size)); err != nil {
		return fmt.Errorf("read %s back: %w", part, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return fmt.Errorf("%s reads back with SHA-256 %s, not %s: the disk did not keep what was written", part, got, m.SHA256)
	}
	bootSec := make([]byte, 512)
	if _, err := dev.ReadAt(bootSec, 0); err != nil {
		return err
	}
	if bootSec[510] != 0x55 || bootSec[511] != 0xaa || !bytes.Equal(bootSec[0x47:0x47+10], []byte("REHOST-SYS")) {
		return fmt.Errorf("the image is not a rehost system partition (want the REHOST-SYS FAT volume)")
	}
	if _, err := updateBootState(ctx, func(s *boot.State) { s.Arm(target, m.Version) }); err != nil {
		return fmt.Errorf("arm system %s in the boot loader: %w", target, err)
	}
	a.saveReport(func(r *status.Report) {
		r.Upgrade.State, r.Upgrade.At = status.Armed, time.Now().UTC()
	})
	return nil
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// progress prints how much was written every 16 MiB.
type progress struct {
	c     *console
	what  string
	total int64
	n     int64
}

func (p *progress) Write(b []byte) (int, error) {
	const step = 16 << 20
	before := p.n / step
	p.n += int64(len(b))
	if p.n/step != before || p.n == p.total {
		p.c.printf("%s: %d of %d MiB\n", p.what, p.n>>20, p.total>>20)
	}
	return len(b), nil
}

func fetchSmall(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 64<<10))
}
