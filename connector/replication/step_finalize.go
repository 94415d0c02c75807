package replication

import (
	"context"
	"fmt"

	"github.com/rehost/rehost/pkg/store"
)

// StepFinalize names and tags the AMI and its snapshots, and records it.
const StepFinalize = "finalize"

type finalizeStep struct{ noEffects }

func (finalizeStep) info() Info {
	return Info{
		Name: StepFinalize, Title: "Name and tag the AMI", Weight: 2, Metric: "finalize",
		Advice:  "The AMI was made but naming or tagging it failed: check the connector's EC2 permissions (ec2:CreateTags) with rehost connector status, then start the job again.",
		Effects: "nothing: names and tags the AMI and its snapshots (idempotent) and records the AMI on the run",
	}
}

func (r *run) amiName() string {
	return fmt.Sprintf("rehost-%s-%s", sanitizeName(r.server.Name), r.run.ReplicationRunID)
}

// sanitizeName keeps the characters an AMI name allows.
func sanitizeName(s string) string {
	b := []byte(s)
	for i, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '(' || c == ')' || c == '/'
		if !ok {
			b[i] = '-'
		}
	}
	return string(b)
}

func (finalizeStep) do(ctx context.Context, r *run) error {
	tags := r.tags()
	tags["Name"] = r.amiName()
	if err := r.target.Finalize(ctx, r.result.ImageID, r.amiName(), tags); err != nil {
		return fmt.Errorf("vm %q: tag image %s: %w", r.server.Name, r.result.ImageID, err)
	}
	_, err := r.e.Store.UpdateRun(ctx, r.run.ReplicationRunID, func(x *store.ReplicationRun) error {
		x.AmiID = r.result.ImageID
		return nil
	})
	if err != nil {
		return fmt.Errorf("vm %q: record image %s: %w", r.server.Name, r.result.ImageID, err)
	}
	return nil
}
