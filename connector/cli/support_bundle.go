package cli

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/pkg/store"
)

type supportBundleOptions struct {
	stateDir string
	out      string
	logs     multiFlag
	files    multiFlag
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func init() {
	Register(Command{
		Name:    "support bundle",
		Usage:   "--out FILE.tar.gz [--log FILE]... [--file FILE]...",
		Summary: "write a support bundle: versions, configuration, jobs, runs and recent logs, secrets redacted",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &supportBundleOptions{}
			stateDirFlag(fs, &o.stateDir)
			fs.StringVar(&o.out, "out", "", "the bundle to write (.tar.gz)")
			fs.Var(&o.logs, "log", "a log file to include, its last 2 MiB (repeatable)")
			fs.Var(&o.files, "file", "a configuration file to include (repeatable)")
			return o.run
		},
	})
}

// supportLogTail is how much of each log goes into a bundle.
const supportLogTail = 2 << 20

// redactions replace what may be a secret in any text of the bundle:
// private keys, AWS key ids, and the value of every field whose name says
// secret, password, token, credential or key. Over-redacting is the safe
// side.
var redactions = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----`), "[redacted private key]"},
	{regexp.MustCompile(`\b(AKIA|ASIA|AIDA|AROA)[A-Z0-9]{12,}\b`), "[redacted key id]"},
	{regexp.MustCompile(`(?i)("?[a-z0-9_.-]*(secret|passw|token|credential|passphrase|accesskey|apikey|private)[a-z0-9_.-]*"?\s*[:=]\s*)("(?:[^"\\]|\\.)*"|[^\s,}&]+)`), `$1"[redacted]"`},
}

// Redact removes what may be a secret from s.
func Redact(s string) string {
	for _, r := range redactions {
		s = r.re.ReplaceAllString(s, r.with)
	}
	return s
}

func (o *supportBundleOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 || o.out == "" {
		return fmt.Errorf("%w: --out is required", ErrUsage)
	}
	files := map[string][]byte{}
	var problems []string
	note := func(what string, err error) { problems = append(problems, fmt.Sprintf("%s: %v", what, err)) }

	kernel, _ := os.ReadFile("/proc/version")
	files["versions.txt"] = fmt.Appendf(nil, "rehost %s\ngo %s %s/%s\nkernel %s\ncollected %s\n",
		version.String(), runtime.Version(), runtime.GOOS, runtime.GOARCH, strings.TrimSpace(string(kernel)), time.Now().UTC().Format(time.RFC3339))

	if d, err := openState(ctx, o.stateDir); err != nil {
		note("open the state directory", err)
	} else {
		add := func(name string, v any, err error) {
			if err != nil {
				note(name, err)
				return
			}
			b, _ := json.MarshalIndent(v, "", "  ")
			files[name] = b
		}
		reg, err := d.Registration(ctx)
		add("registration.json", reg, err)
		srcs, err := d.Store.ListSources(ctx)
		add("sources.json", srcs, err)
		jobs, err := d.Store.ListJobs(ctx, store.JobFilter{})
		add("jobs.json", jobs, err)
		runs := map[string][]store.ReplicationRun{}
		for _, j := range jobs {
			rs, err := d.Store.ListRuns(ctx, j.ReplicationJobID, 20)
			if err != nil {
				note("runs of "+j.ReplicationJobID, err)
				continue
			}
			runs[j.ReplicationJobID] = rs
		}
		add("runs.json", runs, nil)
		d.Close()
	}
	var listing strings.Builder
	filepath.WalkDir(o.stateDir, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			fmt.Fprintf(&listing, "%s: %v\n", p, err)
			return nil
		}
		if st, err := de.Info(); err == nil {
			fmt.Fprintf(&listing, "%s %10d %s %s\n", st.Mode(), st.Size(), st.ModTime().UTC().Format(time.RFC3339), p)
		}
		return nil
	})
	files["state-dir.txt"] = []byte(listing.String())
	for _, p := range o.files {
		b, err := os.ReadFile(p)
		if err != nil {
			note(p, err)
			continue
		}
		files["files/"+filepath.Base(p)] = b
	}
	for _, p := range o.logs {
		b, err := tail(p, supportLogTail)
		if err != nil {
			note(p, err)
			continue
		}
		files["logs/"+filepath.Base(p)] = b
	}
	if len(problems) > 0 {
		files["problems.txt"] = []byte(strings.Join(problems, "\n") + "\n")
	}
	if err := writeBundle(o.out, files); err != nil {
		return fmt.Errorf("write the support bundle %s: %w", o.out, err)
	}
	fmt.Fprintf(env.Stdout, "Support bundle written to %s (%d files, secrets redacted).\n", o.out, len(files))
	return nil
}

// tail returns the last n bytes of a file, from the start of a line.
func tail(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	off := max(st.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return nil, err
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b, nil
}

// writeBundle writes the files, each redacted, as a gzipped tar; the file
// is private to its owner and appears whole or not at all.
func writeBundle(path string, files map[string][]byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	zw := gzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	now := time.Now()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		b := []byte(Redact(string(files[n])))
		if err := tw.WriteHeader(&tar.Header{Name: "rehost-support/" + n, Mode: 0o600, Size: int64(len(b)), ModTime: now}); err != nil {
			f.Close()
			return err
		}
		if _, err := tw.Write(b); err != nil {
			f.Close()
			return err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
