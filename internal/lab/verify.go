package lab

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/rehost/rehost/appliance/release"
	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/pkg/sshsig"
)

func verifyImageFlags(fs *flag.FlagSet) func(context.Context, cli.Env, []string) error {
	key := fs.String("key", "", "the release key's public half: rehost-release.pub, or an allowed_signers line")
	return func(ctx context.Context, env cli.Env, args []string) error {
		if *key == "" || len(args) == 0 {
			return fmt.Errorf("give --key and at least one file: %w", cli.ErrUsage)
		}
		b, err := os.ReadFile(*key)
		if err != nil {
			return err
		}
		pub, err := sshsig.ParsePublicKey(b)
		if err != nil {
			return fmt.Errorf("%s: %w", *key, err)
		}
		var failed []string
		for _, f := range args {
			if err := verifyImage(pub, f); err != nil {
				fmt.Fprintf(env.Stdout, "%s: FAILED: %v\n", f, err)
				failed = append(failed, filepath.Base(f))
				continue
			}
			fmt.Fprintf(env.Stdout, "%s: OK (SHA-256 and signature by %s)\n", f, sshsig.Fingerprint(pub))
		}
		if len(failed) > 0 {
			return fmt.Errorf("%d of %d files failed: %s", len(failed), len(args), strings.Join(failed, ", "))
		}
		return nil
	}
}

// verifyImage checks path against path.sha256 (where the build wrote one)
// and path.sig: signed with pub, for images or, for an upgrade manifest
// (*.img.json), for upgrades.
func verifyImage(pub ed25519.PublicKey, path string) error {
	ns := release.ImageNamespace
	if strings.HasSuffix(path, ".img.json") {
		ns = release.UpgradeNamespace
	}
	sig, err := os.ReadFile(path + ".sig")
	if err != nil {
		return fmt.Errorf("no signature: %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	h := sha256.New()
	if err := sshsig.Verify(pub, ns, io.TeeReader(f, h), sig); err != nil {
		return err
	}
	want, err := os.ReadFile(path + ".sha256")
	if errors.Is(err, os.ErrNotExist) && ns == release.UpgradeNamespace {
		return nil // the manifest carries the image's sum, not one of its own
	}
	if err != nil {
		return fmt.Errorf("no SHA-256 file: %w", err)
	}
	fs := strings.Fields(string(want))
	if got := hex.EncodeToString(h.Sum(nil)); len(fs) == 0 || fs[0] != got {
		return fmt.Errorf("SHA-256 is %s, %s.sha256 says %q", got, filepath.Base(path), strings.TrimSpace(string(want)))
	}
	return nil
}
