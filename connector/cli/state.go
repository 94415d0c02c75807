package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/rehost/rehost/connector/daemon"
)

// defaultStateDir is where the appliance keeps its state.
const defaultStateDir = "/var/lib/rehost"

// stateDirFlag registers --state-dir, defaulting to $REHOST_STATE_DIR.
func stateDirFlag(fs *flag.FlagSet, p *string) {
	def := os.Getenv("REHOST_STATE_DIR")
	if def == "" {
		def = defaultStateDir
	}
	fs.StringVar(p, "state-dir", def, "connector state directory (env REHOST_STATE_DIR)")
}

// openState opens the state directory for a one-shot CLI verb.
func openState(ctx context.Context, dir string) (*daemon.Daemon, error) {
	return daemon.Open(ctx, dir, daemon.Options{Log: slog.New(slog.DiscardHandler)})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// readSecret returns the value of the environment variable env, or reads
// one line from stdin when it is unset: secrets never travel as flags, which
// other users see in the process list.
func readSecret(e Env, env, what string) (string, error) {
	if v, ok := os.LookupEnv(env); ok {
		return v, nil
	}
	fmt.Fprintf(e.Stderr, "%s (or set %s): ", what, env)
	var b strings.Builder
	buf := make([]byte, 1)
	for {
		n, err := e.Stdin.Read(buf)
		if n == 1 {
			if buf[0] == '\n' {
				break
			}
			b.WriteByte(buf[0])
		}
		if err != nil {
			break
		}
	}
	v := strings.TrimRight(b.String(), "\r")
	if v == "" {
		return "", fmt.Errorf("no %s given: set %s or type it on standard input", what, env)
	}
	return v, nil
}
