package replication

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/rehost/rehost/pkg/preflight"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// StepPreflight checks the server and the account again before the run
// makes anything, and fails the run at once with what would make it fail
// later (after hours of copying): an OS VM Import does not import, a
// disk that cannot be exported, a KMS key the vmimport role may not use.
const StepPreflight = "preflight"

// AccountChecker is the optional capability of targets whose account can
// be checked before a run (*aws.Target): it returns the findings, never an
// error, and changes nothing.
type AccountChecker interface {
	Preflight(ctx context.Context, c awstarget.AccountCheck) []preflight.Finding
}

type preflightStep struct{ noEffects }

func (preflightStep) info() Info {
	return Info{
		Name: StepPreflight, Title: "Check the server and the account", Weight: 1, Metric: "preflight",
		Advice:  "Preflight found what would make the run fail: the message names each blocker and 'rehost preflight --server NAME' says what to do; fix them and start the job again.",
		Effects: "nothing: reads the VM's configuration, its boot disk where the source can, and the account; warnings go to the run's events",
	}
}

func (preflightStep) do(ctx context.Context, r *run) error {
	boot, berr := preflight.ReadBoot(ctx, r.src, r.vm)
	fs := preflight.Server(preflight.Input{VM: r.vm, Boot: boot, BootErr: berr})
	if ac, ok := r.target.(AccountChecker); ok {
		var keys []string
		if r.job.Encrypted || r.run.Encrypted {
			keys = append(keys, cmp.Or(r.run.KmsKeyID, r.job.KmsKeyID))
		}
		for _, f := range ac.Preflight(ctx, awstarget.AccountCheck{RoleName: r.job.RoleName, JobKeys: keys}) {
			// An unreachable AWS is for the steps that need it to retry.
			if f.Code != awstarget.CodeCredentials {
				fs = append(fs, f)
			}
		}
	}
	if ws := preflight.Of(fs, preflight.Warning); len(ws) > 0 {
		r.event(ctx, store.LevelWarn, "preflight of vm %q: %s", r.server.Name, summary(ws))
	}
	if bs := preflight.Of(fs, preflight.Blocker); len(bs) > 0 {
		return fmt.Errorf("vm %q cannot be replicated: %s (see 'rehost preflight --server %s')", r.server.Name, summary(bs), r.server.Name)
	}
	return nil
}

// summary lists findings as CODE: message, what to do.
func summary(fs []preflight.Finding) string {
	var out []string
	for _, f := range fs {
		s := f.Code + ": " + strings.TrimSuffix(f.Message, ".")
		if f.Action != "" {
			s += " — " + strings.TrimSuffix(f.Action, ".")
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}
