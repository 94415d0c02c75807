package lab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/pkg/vspheresim"
)

func TestVCenterServesUntilCancelled(t *testing.T) {
	t.Setenv(cli.EnvVCenterPassword, "")
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, cli.Env{Stdout: pw, Stderr: io.Discard}, []string{"vcenter", "--dir", dir, "--demo", "--json"})
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadBytes('\n')
	if err != nil {
		t.Fatalf("read endpoint line: %v", err)
	}
	go io.Copy(io.Discard, pr)
	var info vcenterInfo
	if err := json.Unmarshal(line, &info); err != nil {
		t.Fatalf("parse %q: %v", line, err)
	}
	if info.Password == "" || len(info.VMs) != 3 {
		t.Fatalf("info %+v", info)
	}
	t.Setenv(cli.EnvVCenterPassword, info.Password)
	var out, errOut bytes.Buffer
	if code := cli.Main(ctx, cli.Env{Stdout: &out, Stderr: &errOut}, []string{"source", "inventory", "--url", info.URL, "--user", info.User,
		"--thumbprint", info.Thumbprint}); code != 0 || !strings.Contains(out.String(), "web-01") {
		t.Fatalf("inventory of the emulator: exit %d %s %s", code, out.String(), errOut.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("exit code %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("emulator did not stop on cancel")
	}
	// The key pair stays in --dir, so the thumbprint a user accepted holds
	// across restarts.
	sim, err := vspheresim.Start(context.Background(), vspheresim.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	if sim.Thumbprint() != info.Thumbprint {
		t.Fatalf("thumbprint changed across restarts: %s then %s", info.Thumbprint, sim.Thumbprint())
	}
}
