package release

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/sshsig"
)

func key(t *testing.T) ed25519.PrivateKey {
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sign(t *testing.T, k ed25519.PrivateKey, ns string, b []byte) []byte {
	s, err := sshsig.Sign(k, ns, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The appliance installs an image whose manifest its release key signed;
// it refuses an unsigned one, one signed by another key, one changed after
// signing, one signed for the wrong purpose, an older one unless a
// downgrade is asked for, one of another layout and one too large.
func TestOpenAndCheck(t *testing.T) {
	rel := key(t)
	pub := rel.Public().(ed25519.PublicKey)
	running := Manifest{Product: Product, Version: "1.4.0", Epoch: 1_800_000_000, Layout: Layout}
	m := Manifest{Product: Product, Version: "1.5.0", Epoch: 1_800_100_000, Layout: Layout, Image: "rehost-connector-system.img",
		Size: 128 << 20, SHA256: strings.Repeat("ab", 32)}
	b := m.Marshal()

	got, err := Open(b, sign(t, rel, UpgradeNamespace, b), pub)
	if err != nil || got != m {
		t.Fatalf("Open of a signed manifest: %+v, %v", got, err)
	}
	if err := Check(running, got, 128<<20, false); err != nil {
		t.Fatalf("Check of a newer image: %v", err)
	}

	refusals := map[string]struct {
		manifest, sig []byte
		want          string
	}{
		"unsigned":        {b, nil, "not signed"},
		"another key":     {b, sign(t, key(t), UpgradeNamespace, b), "does not verify with this appliance's release key"},
		"changed":         {bytes.Replace(b, []byte("1.5.0"), []byte("1.6.0"), 1), sign(t, rel, UpgradeNamespace, b), "does not verify"},
		"image signature": {b, sign(t, rel, ImageNamespace, b), "does not verify"},
		"garbage":         {b, []byte("not a signature"), "signature"},
	}
	for name, c := range refusals {
		_, err := Open(c.manifest, c.sig, pub)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error saying %q", name, err, c.want)
		}
	}

	old := m
	old.Epoch = running.Epoch - 1
	if err := Check(running, old, 128<<20, false); !errors.Is(err, ErrOlder) {
		t.Errorf("older image: %v, want ErrOlder", err)
	}
	if err := Check(running, old, 128<<20, true); err != nil {
		t.Errorf("older image with downgrade asked for: %v", err)
	}
	same := m
	same.Epoch = running.Epoch
	if err := Check(running, same, 128<<20, false); err != nil {
		t.Errorf("same commit (a reinstall): %v", err)
	}
	other := m
	other.Layout = Layout - 1
	if err := Check(running, other, 128<<20, true); err == nil || !strings.Contains(err.Error(), "layout") {
		t.Errorf("another layout: %v", err)
	}
	if err := Check(running, m, 64<<20, false); err == nil {
		t.Error("an image larger than the partition is accepted")
	}
}
