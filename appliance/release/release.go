// Package release describes an appliance system image: the manifest the
// build signs beside rehost-connector-system.img, the release the running
// appliance carries in its initramfs, and the rule that decides whether an
// appliance installs an image (signed by its release key, of its disk
// layout, not older than what runs unless a downgrade is asked for).
package release

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/rehost/rehost/pkg/sshsig"
)

// Namespaces of the signatures the build makes: one for every file it
// outputs (checked by people with ssh-keygen or rehost-lab verify-image),
// one for the upgrade manifest (checked by the appliance), so neither can
// stand in for the other.
const (
	ImageNamespace   = "rehost-image"
	UpgradeNamespace = "rehost-upgrade"
	// Identity names the release key in allowed_signers files.
	Identity = "release@rehost"
)

// Product is the manifest's product field: what the image is.
const Product = "rehost-connector-system"

// Layout is the disk layout this code builds and upgrades: BIOS boot,
// EFI system partition, system A, system B, data. An image of another
// layout does not fit the partitions and is refused.
const Layout = 2

// Manifest describes a system partition image. The build writes it as
// JSON beside the image (IMAGE.json) with its signature (IMAGE.json.sig);
// the appliance reads both before it downloads the image.
type Manifest struct {
	Product string `json:"product"`
	Version string `json:"version"`
	// Epoch is the build's SOURCE_DATE_EPOCH, the commit's time: what
	// orders releases (a version string from git describe does not).
	Epoch  int64  `json:"epoch"`
	Layout int    `json:"layout"`
	Image  string `json:"image,omitempty"`  // file name of the image
	Size   int64  `json:"size,omitempty"`   // bytes
	SHA256 string `json:"sha256,omitempty"` // hex
	// DevKey: signed with the build's development key, which is public.
	DevKey bool `json:"devKey,omitempty"`
}

// Built is when the image was built.
func (m Manifest) Built() time.Time { return time.Unix(m.Epoch, 0).UTC() }

// Marshal is the manifest as the build writes it.
func (m Manifest) Marshal() []byte {
	b, _ := json.MarshalIndent(m, "", "  ")
	return append(b, '\n')
}

// ErrOlder: the image is older than the running system and no downgrade
// was asked for.
var ErrOlder = errors.New("older than the running version")

// Open checks the manifest's signature with the release key and parses
// it. An unsigned manifest (no signature), one signed by another key and
// one changed after signing are refused, each saying so.
func Open(manifest, sig []byte, key ed25519.PublicKey) (Manifest, error) {
	var m Manifest
	if len(bytes.TrimSpace(sig)) == 0 {
		return m, errors.New("the image is not signed (no signature beside its manifest): the appliance installs only images signed with its release key")
	}
	if err := sshsig.Verify(key, UpgradeNamespace, bytes.NewReader(manifest), sig); err != nil {
		if errors.Is(err, sshsig.ErrBadSignature) {
			return m, fmt.Errorf("the image's signature does not verify with this appliance's release key %s: %w (an image from another builder, or changed after signing)", sshsig.Fingerprint(key), err)
		}
		return m, fmt.Errorf("the image's signature: %w", err)
	}
	if err := json.Unmarshal(manifest, &m); err != nil {
		return m, fmt.Errorf("the image's manifest: %w", err)
	}
	if m.Product != Product {
		return m, fmt.Errorf("the manifest is of %q, not a %s image", m.Product, Product)
	}
	if m.Size <= 0 || len(m.SHA256) != 64 || m.Version == "" {
		return m, errors.New("the manifest lacks the image's size, SHA-256 or version")
	}
	return m, nil
}

// Check decides whether the running system installs m into a partition
// of partSize bytes: the same disk layout, an image that fits, and not
// older than running unless downgrade is set. The error says which rule
// refused it; ErrOlder is wrapped for an older image.
func Check(running, m Manifest, partSize int64, downgrade bool) error {
	if m.Layout != running.Layout {
		return fmt.Errorf("the image is for disk layout %d, this appliance has layout %d: deploy the new release's OVA/VHDX and restore the state into it (rehost state backup, rehost state restore)", m.Layout, running.Layout)
	}
	if m.Size > partSize {
		return fmt.Errorf("the image has %d bytes, the system partition %d", m.Size, partSize)
	}
	if m.Epoch < running.Epoch && !downgrade {
		return fmt.Errorf("version %s (built %s) is %w %s (built %s): a downgrade must be asked for explicitly",
			m.Version, m.Built().Format(time.DateOnly), ErrOlder, running.Version, running.Built().Format(time.DateOnly))
	}
	return nil
}
