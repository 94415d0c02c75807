package lab

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/connector/demo"
)

func leftoversFlags(fs *flag.FlagSet) func(context.Context, cli.Env, []string) error {
	o := &leftoversOptions{}
	fs.StringVar(&o.urls.VCenter, "vcenter", "", "the simulated vCenter's URL (rehost-lab vcenter printed it)")
	fs.StringVar(&o.urls.VCenterThumbprint, "vcenter-thumbprint", "", "its certificate's SHA-256 thumbprint (default: not checked, loopback only)")
	fs.StringVar(&o.urls.S3, "s3", "", "the S3 peer's plain HTTP endpoint, or its HTTPS one with --s3-ca (rehost-lab s3 printed both)")
	fs.StringVar(&o.s3CA, "s3-ca", "", "PEM file of the S3 peer's CA (its caFile), for the HTTPS endpoint")
	fs.StringVar(&o.urls.AWS, "aws", "", "the AWS emulator's endpoint (rehost-lab aws printed it)")
	fs.StringVar(&o.bucket, "bucket", "", "count objects and uploads in this bucket only (default: every bucket)")
	fs.BoolVar(&o.json, "json", false, "print the counts as JSON")
	return o.run
}

type leftoversOptions struct {
	urls   demo.PeerURLs
	s3CA   string
	bucket string
	json   bool
}

// leftoverCounts is the JSON the verb prints.
type leftoverCounts struct {
	OpenLeases       int `json:"openLeases"`
	VMSnapshots      int `json:"vmSnapshots"`
	MultipartUploads int `json:"multipartUploads"`
	Objects          int `json:"objects"`
	ActiveImports    int `json:"activeImports"`
	OrphanSnapshots  int `json:"orphanEbsSnapshots"` // in no AMI
	// PendingSnapshots are EBS direct snapshots never completed (a replica
	// a killed run left); ReplicaSnapshots the completed replicas that
	// incremental jobs keep between runs.
	PendingSnapshots int            `json:"pendingEbsSnapshots"`
	ReplicaSnapshots int            `json:"replicaSnapshots"`
	AMIs             int            `json:"amis"`
	AMIsPerRun       map[string]int `json:"amisPerRun"`
	Stacks           int            `json:"stacks"`    // not deleted
	Instances        int            `json:"instances"` // not terminated
	// Clean is true when nothing but AMIs (one per run at most) and
	// application templates is left.
	Clean   bool           `json:"clean"`
	Details demo.Leftovers `json:"details"`
}

func (o *leftoversOptions) run(ctx context.Context, env cli.Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if o.urls.VCenter == "" || o.urls.S3 == "" || o.urls.AWS == "" {
		return fmt.Errorf("--vcenter, --s3 and --aws are required: %w", cli.ErrUsage)
	}
	if o.s3CA != "" {
		var err error
		if o.urls.S3Client, err = trusting(o.s3CA); err != nil {
			return fmt.Errorf("read --s3-ca: %w", err)
		}
	}
	st, err := demo.FetchStates(ctx, o.urls)
	if err != nil {
		return err
	}
	l := st.Leftovers(o.bucket, nil)
	c := leftoverCounts{OpenLeases: l.OpenLeases, VMSnapshots: len(l.VMSnapshots), MultipartUploads: len(l.Uploads),
		Objects: len(l.Objects), ActiveImports: len(l.ActiveImports), OrphanSnapshots: len(l.OrphanSnapshots),
		PendingSnapshots: len(l.PendingSnapshots), ReplicaSnapshots: len(l.ReplicaSnapshots),
		AMIsPerRun: l.AMIsPerRun, Stacks: len(l.Stacks), Instances: len(l.Instances), Clean: l.Empty(), Details: l}
	for _, im := range st.AWS.Images {
		if im.State != "deregistered" {
			c.AMIs++
		}
	}
	if o.json {
		return printJSON(env, c)
	}
	fmt.Fprintf(env.Stdout, "open NFC leases       %d\nVM snapshots          %d\nmultipart uploads     %d\nobjects               %d\nactive imports        %d\norphan EBS snapshots  %d\npending EBS snapshots %d\nreplica snapshots     %d\nAMIs                  %d\nstacks                %d\ninstances             %d\n",
		c.OpenLeases, c.VMSnapshots, c.MultipartUploads, c.Objects, c.ActiveImports, c.OrphanSnapshots, c.PendingSnapshots, c.ReplicaSnapshots, c.AMIs, c.Stacks, c.Instances)
	runs := make([]string, 0, len(c.AMIsPerRun))
	for r, n := range c.AMIsPerRun {
		runs = append(runs, fmt.Sprintf("%s=%d", r, n))
	}
	slices.Sort(runs)
	if len(runs) > 0 {
		fmt.Fprintf(env.Stdout, "AMIs per run          %s\n", strings.Join(runs, " "))
	}
	fmt.Fprintf(env.Stdout, "\n%s\n", l)
	return nil
}

func printJSON(env cli.Env, v any) error {
	b, err := jsonIndent(v)
	if err != nil {
		return err
	}
	_, err = env.Stdout.Write(b)
	return err
}
