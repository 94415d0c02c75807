package api

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/pkg/store"
)

// Redacted replaces secrets in what the connector writes out.
const Redacted = "[REDACTED]"

// Redactor removes known secret values from text, raw or JSON-escaped, and
// any PEM private key block, whoever's it is.
type Redactor struct{ r *strings.Replacer }

var pemPrivateKey = regexp.MustCompile(`(?s)-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----`)

// NewRedactor returns a Redactor for the given secrets.
func NewRedactor(secrets []string) *Redactor {
	var pairs []string
	for _, s := range secrets {
		pairs = append(pairs, s, Redacted)
		if b, err := json.Marshal(s); err == nil {
			if esc := string(b[1 : len(b)-1]); esc != s {
				pairs = append(pairs, esc, Redacted)
			}
		}
	}
	return &Redactor{strings.NewReplacer(pairs...)}
}

// Bytes returns b with every secret replaced.
func (r *Redactor) Bytes(b []byte) []byte {
	return pemPrivateKey.ReplaceAll([]byte(r.r.Replace(string(b))), []byte(Redacted))
}

// logTail is how much of the log the bundle carries.
const logTail = 2 << 20

// SupportBundle writes a zip for a support case: versions, the daemon's
// configuration, the registration, a state summary, the connector's status,
// the fleet's view (in a fleet), recent events and the tail of the log. Secrets are never put in, and as
// a second line of defence every file is scrubbed of every secret the state
// directory holds.
func (l *Local) SupportBundle(ctx context.Context, w io.Writer) error {
	red := NewRedactor(l.D.Secrets(ctx))
	zw := zip.NewWriter(w)
	add := func(name string, b []byte) error {
		f, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: time.Now()})
		if err != nil {
			return err
		}
		_, err = f.Write(red.Bytes(b))
		return err
	}
	addJSON := func(name string, v any) error {
		b, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		return add(name, append(b, '\n'))
	}
	var errs []string
	note := func(what string, err error) {
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", what, err))
		}
	}

	note("versions", addJSON("versions.json", map[string]string{
		"rehost": version.String(), "go": runtime.Version(), "os": runtime.GOOS, "arch": runtime.GOARCH,
		"created": time.Now().UTC().Format(time.RFC3339),
	}))
	cfg := l.Config
	info, running, err := daemon.Serving(l.D.Dir)
	note("daemon", err)
	if cfg == nil && running {
		cfg = info.Config
	}
	note("config", addJSON("config.json", map[string]any{"stateDir": l.D.Dir, "daemon": info, "daemonRunning": running || !l.Started.IsZero(), "config": cfg}))
	if reg, err := l.GetRegistration(ctx, nil); err == nil {
		note("registration", addJSON("registration.json", reg))
	} else {
		note("registration", err)
	}
	sum, err := l.summary(ctx)
	note("summary", err)
	if err == nil {
		note("summary", addJSON("summary.json", sum))
	}
	if st, err := l.GetConnectorStatus(ctx, nil); err == nil {
		note("status", addJSON("status.json", st))
	} else {
		note("status", err)
	}
	// In a fleet, the fleet's view: every member, the leader, the leases.
	if st, err := l.GetFleetStatus(ctx, nil); err == nil {
		note("fleet", addJSON("fleet.json", st))
	} else if !IsType(err, ErrOperationNotPermitted) {
		note("fleet", err)
	}
	if evs, err := l.GetEvents(ctx, &GetEventsInput{MaxResults: maxPage}); err == nil {
		note("events", addJSON("events.json", evs.Events))
	} else {
		note("events", err)
	}
	for _, p := range []string{daemon.LogFile(l.D.Dir) + ".1", daemon.LogFile(l.D.Dir)} {
		b, err := tail(p, logTail)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		note("log "+p, err)
		if err == nil {
			note("log", add("logs/"+filepath.Base(p), b))
		}
	}
	for _, p := range l.ExtraFiles {
		b, err := tail(p, logTail)
		note("file "+p, err)
		if err == nil {
			note("file "+p, add("files/"+filepath.Base(p), b))
		}
	}
	if len(errs) > 0 {
		note("errors", add("errors.txt", []byte(strings.Join(errs, "\n")+"\n")))
	}
	return zw.Close()
}

// summary is the state without secrets: what support needs to see.
func (l *Local) summary(ctx context.Context) (map[string]any, error) {
	srcs, err := l.ListSources(ctx, nil)
	if err != nil {
		return nil, err
	}
	jobs, err := l.D.Store.ListJobs(ctx, store.JobFilter{})
	if err != nil {
		return nil, err
	}
	servers, err := l.D.Store.ListServers(ctx, store.ServerFilter{})
	if err != nil {
		return nil, err
	}
	type jobSummary struct {
		store.ReplicationJob
		RecentRuns []store.ReplicationRun `json:"recentRuns"`
	}
	var js []jobSummary
	for _, j := range jobs {
		runs, err := l.D.Store.ListRuns(ctx, j.ReplicationJobID, 10)
		if err != nil {
			return nil, err
		}
		js = append(js, jobSummary{j, runs})
	}
	keys, err := l.D.AccessKeys(ctx)
	if err != nil {
		return nil, err
	}
	return map[string]any{"sources": srcs.Sources, "serverCount": len(servers), "jobs": js, "accessKeys": keys}, nil
}

// tail reads at most n bytes from the end of a file.
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
	off := max(0, st.Size()-n)
	b := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(b, off); err != nil && err != io.EOF {
		return nil, err
	}
	if off > 0 {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return b, nil
}
