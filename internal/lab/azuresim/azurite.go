package azuresim

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// AzuriteVersion is the pinned Azurite (npm) release; scripts/deps.sh
// installs the same one.
const AzuriteVersion = "3.35.0"

// AzuriteEnv names an azurite-blob executable to use instead of the
// repo-local pinned install.
const AzuriteEnv = "REHOST_AZURITE_BLOB"

// azurite is a running azurite-blob process with one storage account of
// a random name and key (passed through AZURITE_ACCOUNTS, so no key is
// hard-coded anywhere).
type azurite struct {
	cmd     *exec.Cmd
	url     string // http://127.0.0.1:port
	account string
	key     string // base64
	done    chan struct{}
	stderr  *strings.Builder
}

// azuriteBinary finds azurite-blob: $REHOST_AZURITE_BLOB, the pinned
// install under <repo>/.tools/azurite/<version>, which it makes with npm
// when missing (as scripts/deps.sh does), or one on PATH outside the
// source tree.
func azuriteBinary(ctx context.Context) (string, error) {
	if p := os.Getenv(AzuriteEnv); p != "" {
		return p, nil
	}
	root, err := repoRoot(ctx)
	if err != nil {
		if p, lerr := exec.LookPath("azurite-blob"); lerr == nil {
			return p, nil
		}
		return "", fmt.Errorf("locate azurite-blob: %w; install npm package azurite@%s or set %s", err, AzuriteVersion, AzuriteEnv)
	}
	dir := filepath.Join(root, ".tools", "azurite", AzuriteVersion)
	bin := filepath.Join(dir, "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	// Install into a private directory and rename it into place: two test
	// processes racing both install, one rename wins, neither sees half.
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "npm", "install", "--prefix", tmp, "--no-audit", "--no-fund", "--omit=dev", "azurite@"+AzuriteVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("install azurite %s with npm (needs node and npm: apt-get install nodejs npm): %w: %s", AzuriteVersion, err, lastLines(string(out), 5))
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(bin); serr != nil {
			return "", fmt.Errorf("install azurite: %w", err)
		}
	}
	return bin, nil
}

func repoRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}

var listening = regexp.MustCompile(`listens on (http://[0-9.]+:[0-9]+)`)

// startAzurite runs azurite-blob on an ephemeral loopback port, data in
// memory (bounded), and waits until it listens.
func startAzurite(ctx context.Context, dir string) (*azurite, error) {
	bin, err := azuriteBinary(ctx)
	if err != nil {
		return nil, err
	}
	key := make([]byte, 64)
	rand.Read(key)
	a := &azurite{account: "rehostsim", key: base64.StdEncoding.EncodeToString(key), done: make(chan struct{}), stderr: &strings.Builder{}}
	// --skipApiVersionCheck: the SDK may speak a newer x-ms-version than
	// this Azurite release knows; the calls used exist in both.
	a.cmd = exec.Command(bin, "--inMemoryPersistence", "--extentMemoryLimit", "512", "--disableTelemetry", "--skipApiVersionCheck",
		"--blobHost", "127.0.0.1", "--blobPort", "0", "--silent")
	a.cmd.Dir = dir
	a.cmd.Env = append(os.Environ(), "AZURITE_ACCOUNTS="+a.account+":"+a.key)
	a.cmd.Stderr = a.stderr
	out, err := a.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := a.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start azurite-blob: %w", err)
	}
	found := make(chan string, 1)
	go func() {
		defer close(a.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := listening.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case found <- m[1]:
				default:
				}
			}
		}
		io.Copy(io.Discard, out)
		a.cmd.Wait()
	}()
	select {
	case a.url = <-found:
		return a, nil
	case <-a.done:
		return nil, fmt.Errorf("azurite-blob exited before listening: %s", lastLines(a.stderr.String(), 10))
	case <-time.After(60 * time.Second):
		a.close()
		return nil, errors.New("azurite-blob did not listen within 60 s")
	case <-ctx.Done():
		a.close()
		return nil, ctx.Err()
	}
}

func (a *azurite) close() {
	if a.cmd.Process != nil {
		a.cmd.Process.Kill()
	}
	<-a.done
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(l[max(0, len(l)-n):], "\n")
}
