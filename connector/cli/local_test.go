package cli

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/daemon"
)

// Read-only verbs on a missing or empty state directory say so, point at
// rehost register, and create nothing.
func TestReadOnlyVerbsCreateNoState(t *testing.T) {
	t.Setenv("REHOST_ENDPOINT", "")
	t.Setenv("REHOST_LOGIN_FILE", filepath.Join(t.TempDir(), "none.json"))
	missing := filepath.Join(t.TempDir(), "nonexistent")
	empty := t.TempDir()
	for _, dir := range []string{missing, empty} {
		for _, verb := range [][]string{{"job", "list"}, {"server", "list"}, {"run", "list", "--job", "sms-job-1"}, {"source", "list"}, {"admin", "key", "list"}, {"connector", "status"}} {
			_, errs, code := walk(t, append(verb, "--state-dir", dir)...)
			if code != 1 || !strings.Contains(errs, "rehost register") || !strings.Contains(errs, dir) {
				t.Errorf("%v on %s: exit %d, %q", verb, dir, code, errs)
			}
		}
	}
	if _, err := os.Stat(missing); !os.IsNotExist(err) {
		t.Errorf("a read-only verb created %s", missing)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("a read-only verb wrote into the empty state directory: %v", ents)
	}
}

// One daemon per state directory: a second serve is refused, naming the
// first one's pid.
func TestSecondServeIsRefused(t *testing.T) {
	clearServeEnv(t)
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan int, 1)
	var errs1 strings.Builder
	go func() {
		first <- Main(ctx, Env{Stdin: strings.NewReader(""), Stdout: &strings.Builder{}, Stderr: &errs1},
			[]string{"serve", "--state-dir", dir, "--listen", "127.0.0.1:0", "--log-format", "text"})
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, ok, _ := daemon.Serving(dir); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first serve did not lock the state directory")
		}
	}
	_, errs, code := walk(t, "serve", "--state-dir", dir, "--listen", "127.0.0.1:0")
	if code != 1 || !strings.Contains(errs, "pid "+strconv.Itoa(os.Getpid())) || !strings.Contains(errs, "another 'rehost serve'") {
		t.Errorf("second serve: exit %d, %q", code, errs)
	}
	cancel()
	if code := <-first; code != 0 {
		t.Errorf("first serve exited %d", code)
	}
	if _, ok, _ := daemon.Serving(dir); ok {
		t.Error("the lock outlived the daemon")
	}
}

func TestServeConfigNamesBadKeys(t *testing.T) {
	clearServeEnv(t)
	for _, c := range []struct{ text, want string }{
		{`{"maxConcurentRuns": 3}`, `unknown key "maxConcurentRuns"`},
		{`{"maxConcurrentRuns": "two"}`, `key "maxConcurrentRuns": want a whole number, got a string`},
		{`{"resyncInterval": 30}`, `key "resyncInterval": want a string, got a number`},
	} {
		_, err := serveFlags(t, writeConfig(t, c.text)).config()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.text, err, c.want)
		}
	}
	file := writeConfig(t, `{"resyncInterval": "soon"}`)
	_, errs, code := walk(t, "serve", "--config", file, "--state-dir", t.TempDir())
	if code != 1 || !strings.Contains(errs, `resyncInterval "soon"`) {
		t.Errorf("bad resync value: %d %s", code, errs)
	}
}
