package build

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"github.com/rehost/rehost/appliance/release"
	"github.com/rehost/rehost/pkg/sshsig"
)

// Where make appliance finds the release key: a file, or the file's
// content in the environment (a CI secret). Either is an unencrypted
// OpenSSH Ed25519 private key, as `ssh-keygen -t ed25519 -N ”` makes.
const (
	EnvKeyFile = "REHOST_SIGNING_KEY_FILE"
	EnvKey     = "REHOST_SIGNING_KEY"
)

// DevSigningKey is the key a build without a release key signs with. It is
// derived from a fixed, published seed, so development builds stay
// reproducible (two clones give the same bytes) and upgrade one another —
// and so it protects nothing: anyone can sign an image that an appliance
// built with it installs. The build and the appliance's console say so.
func DevSigningKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("rehost appliance development signing key: public, not for production"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// LoadSigningKey returns the release key from getenv's EnvKeyFile or
// EnvKey, or DevSigningKey with dev set when neither is set.
func LoadSigningKey(getenv func(string) string) (key ed25519.PrivateKey, dev bool, err error) {
	var pem []byte
	var from string
	switch {
	case getenv(EnvKeyFile) != "":
		from = getenv(EnvKeyFile)
		if pem, err = os.ReadFile(from); err != nil {
			return nil, false, fmt.Errorf("release key: %w", err)
		}
	case getenv(EnvKey) != "":
		from, pem = "$"+EnvKey, []byte(getenv(EnvKey))
	default:
		return DevSigningKey(), true, nil
	}
	k, err := ssh.ParseRawPrivateKey(pem)
	var missing *ssh.PassphraseMissingError
	if errors.As(err, &missing) {
		return nil, false, fmt.Errorf("release key %s is encrypted: give the build an unencrypted copy (ssh-keygen -p -N '' -f COPY)", from)
	}
	if err != nil {
		return nil, false, fmt.Errorf("release key %s: %w", from, err)
	}
	ek, ok := k.(*ed25519.PrivateKey)
	if !ok {
		return nil, false, fmt.Errorf("release key %s is a %T: want an Ed25519 key (ssh-keygen -t ed25519)", from, k)
	}
	return *ek, false, nil
}

// signFile writes path.sig: the detached signature ssh-keygen -Y verify
// and rehost-lab verify-image check.
func signFile(key ed25519.PrivateKey, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sig, err := sshsig.Sign(key, release.ImageNamespace, f)
	if err != nil {
		return fmt.Errorf("sign %s: %w", path, err)
	}
	return os.WriteFile(path+".sig", sig, 0o644)
}

// runningRelease is what the initramfs says of itself
// (/etc/rehost/release.json): the manifest without the image's size and
// sum, which the image cannot hold.
func runningRelease(o Options) release.Manifest {
	return release.Manifest{Product: release.Product, Version: o.Version, Epoch: o.Epoch.Unix(), Layout: release.Layout, DevKey: o.DevKey}
}

// writeManifest writes the system image's upgrade manifest and its
// signature, which the appliance checks before it downloads the image.
func writeManifest(o Options, sys string) (string, error) {
	sum, err := fileSHA256(sys)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(sys)
	if err != nil {
		return "", err
	}
	m := runningRelease(o)
	m.Image, m.Size, m.SHA256 = filepath.Base(sys), st.Size(), sum
	p := filepath.Join(o.Out, ManifestFile)
	b := m.Marshal()
	if err := os.WriteFile(p, b, 0o644); err != nil {
		return "", err
	}
	sig, err := sshsig.Sign(o.Key, release.UpgradeNamespace, bytes.NewReader(b))
	if err != nil {
		return "", err
	}
	return p, os.WriteFile(p+".sig", sig, 0o644)
}

// writePublicKey writes the release key's public half: as an
// authorized_keys line (rehost-lab verify-image --key) and as an
// allowed_signers file (ssh-keygen -Y verify -f).
func writePublicKey(o Options) ([]string, error) {
	pub := o.Key.Public().(ed25519.PublicKey)
	pubFile := filepath.Join(o.Out, PublicKeyFile)
	allowed := filepath.Join(o.Out, AllowedSignersFile)
	if err := os.WriteFile(pubFile, []byte(sshsig.MarshalPublicKey(pub, release.Identity)+"\n"), 0o644); err != nil {
		return nil, err
	}
	line := sshsig.AllowedSigners(release.Identity, pub, release.ImageNamespace, release.UpgradeNamespace)
	return []string{pubFile, allowed}, os.WriteFile(allowed, []byte(line), 0o644)
}
