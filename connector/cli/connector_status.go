package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/pkg/preflight"
)

// errUnhealthy is what connector status returns when a check failed.
var errUnhealthy = errors.New("the connector is not healthy")

func init() {
	Register(Command{
		Name:    "connector status",
		Usage:   "[--json]",
		Summary: "check the connector: AWS and every source reachable, free disk, version, uptime; exits 1 when unhealthy",
		Flags: reader[*api.ConnectorStatus]{
			get: func(ctx context.Context, svc api.Service, _ []string) (*api.ConnectorStatus, error) {
				return svc.GetConnectorStatus(ctx, &api.GetConnectorStatusInput{})
			},
			text: printStatus,
			verdict: func(st *api.ConnectorStatus) error {
				if !st.Healthy {
					return errUnhealthy
				}
				return nil
			},
		}.flags,
	})
}

// printFindings lists the blockers and warnings of a preflight, each with
// what to do.
func printFindings(w io.Writer, fs []preflight.Finding) {
	for _, f := range fs {
		if f.Level == preflight.Note {
			continue
		}
		fmt.Fprintf(w, "  %s %s: %s", f.Level, f.Code, f.Message)
		if f.Action != "" {
			fmt.Fprintf(w, " %s", f.Action)
		}
		fmt.Fprintln(w)
	}
}

func printStatus(env Env, st *api.ConnectorStatus) {
	w := env.Stdout
	fmt.Fprintf(w, "version:      %s\n", st.Version)
	fmt.Fprintf(w, "daemon:       %s", st.Daemon)
	if st.UptimeSeconds > 0 {
		fmt.Fprintf(w, ", up %s", time.Duration(st.UptimeSeconds)*time.Second)
	}
	fmt.Fprintln(w)
	reg := st.Registration
	if reg.Registered {
		fmt.Fprintf(w, "registration: %s, bucket %s, role %s, credentials: %s\n", reg.Region, reg.Bucket, reg.RoleName, reg.Credentials)
	} else {
		fmt.Fprintln(w, "registration: not registered: run 'rehost register'")
	}
	check := func(c api.Check) string {
		if c.OK {
			return fmt.Sprintf("ok (%.2f s)", c.LatencySeconds)
		}
		return "FAILED: " + c.Message
	}
	fmt.Fprintf(w, "aws:          %s\n", check(st.AWS))
	for _, s := range st.Sources {
		fmt.Fprintf(w, "source %-6s %s\n", s.Name+":", check(s))
	}
	if len(st.Sources) == 0 {
		fmt.Fprintln(w, "sources:      none: add one with 'rehost source add'")
	}
	fmt.Fprintf(w, "disk:         %s free of %s\n", bytesIEC(int64(st.FreeDiskBytes)), bytesIEC(int64(st.TotalDiskBytes)))
	fmt.Fprintf(w, "runs:         %d active, %d waiting\n", st.RunsActive, st.RunsPending)
	if p := st.Preflight; p != nil {
		fmt.Fprintf(w, "preflight:    the account is %s (checked %s)\n", p.Status, cell(p.CheckedAt))
		printFindings(w, p.Findings)
	}
	if a := st.Appliance; a != nil {
		key := a.SigningKey
		if a.DevKey {
			key += " (the development key: public, not for production)"
		}
		fmt.Fprintf(w, "appliance:    system %s, Secure Boot %s, release key %s\n", a.System, a.SecureBoot, key)
		if u := a.Upgrade; u != nil {
			fmt.Fprintf(w, "last upgrade: from %s to %s (system %s): %s at %s", u.From, u.To, u.System, u.State, u.At.Format(time.RFC3339))
			if u.Reason != "" {
				fmt.Fprintf(w, ": %s", u.Reason)
			}
			fmt.Fprintln(w)
		}
	}
	if st.Healthy {
		fmt.Fprintln(w, "healthy")
	}
}
