package cli

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

type registerOptions struct {
	conn       *connFlags
	s          daemon.AWSSettings
	caFile     string
	storeKeys  bool
	createRole bool
	fixBucket  bool
	json       bool
}

func init() {
	Register(Command{
		Name:    "register",
		Usage:   "--region R [--aws-profile P] [--bucket B] [--kms-key K] [--create-role] [--fix-bucket] [--store-keys] [--aws-endpoint URL --s3-endpoint URL]",
		Summary: "register the connector with an AWS account: check it, prepare the staging bucket and the vmimport role",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			o := &registerOptions{conn: addConnFlags(fs)}
			// --region names the account's region here, which is also the
			// one API requests are signed for.
			fs.Lookup("region").Usage = "AWS region (env AWS_REGION)"
			fs.StringVar(&o.s.Bucket, "bucket", "", "staging bucket (default rehost-staging-<account>-<region>)")
			fs.StringVar(&o.s.KMSKeyID, "kms-key", "", "KMS key for SSE-KMS staging and encrypted AMIs (default SSE-S3)")
			fs.StringVar(&o.s.RoleName, "role", "vmimport", "VM Import service role")
			fs.StringVar(&o.s.Profile, "aws-profile", "", "shared config profile for the account's credentials")
			fs.StringVar(&o.s.AssumeRoleARN, "assume-role", "", "ARN of a role to assume with those credentials and act as")
			fs.StringVar(&o.s.ExternalID, "external-id", "", "external id the assumed role's trust policy asks for")
			fs.StringVar(&o.s.Endpoint, "aws-endpoint", "", "EC2/IAM/STS/EBS/KMS/Service Quotas endpoint override (an emulator or VPC endpoint)")
			fs.StringVar(&o.s.S3Endpoint, "s3-endpoint", "", "S3 endpoint override (path-style)")
			fs.StringVar(&o.s.ImportMode, "import-mode", "image", "image (ImportImage) or snapshot (ImportSnapshot + RegisterImage)")
			fs.DurationVar(&o.s.PollInitial, "poll-initial", 0, "first interval between polls of a VM Import task (default 2s)")
			fs.DurationVar(&o.s.PollMax, "poll-max", 0, "longest interval between polls of a VM Import task (default 30s)")
			fs.StringVar(&o.caFile, "aws-ca-file", "", "PEM file of an extra CA to trust for the endpoints")
			fs.BoolVar(&o.storeKeys, "store-keys", false, "store AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (encrypted) for the daemon instead of using the default credential chain at run time")
			fs.BoolVar(&o.createRole, "create-role", false, "create the vmimport role when missing (else print the documents for an administrator)")
			fs.BoolVar(&o.fixBucket, "fix-bucket", false, "change an existing bucket whose settings are weaker than wanted")
			fs.BoolVar(&o.json, "json", false, "print the setup report as JSON")
			return o.run
		},
	})
}

func (o *registerOptions) run(ctx context.Context, env Env, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("%w: unexpected argument %q", ErrUsage, args[0])
	}
	o.s.Region = cmp.Or(o.conn.region, os.Getenv("AWS_REGION"))
	if o.s.Region == "" {
		return fmt.Errorf("%w: --region is required", ErrUsage)
	}
	if o.s.Endpoint != "" && o.s.S3Endpoint == "" {
		// Staging would otherwise go to real S3 while imports read
		// from the overridden endpoint's account.
		return fmt.Errorf("%w: --aws-endpoint needs --s3-endpoint too (the S3 endpoint of the same account)", ErrUsage)
	}
	if o.s.PollInitial < 0 || o.s.PollMax < 0 || o.s.PollMax > 0 && o.s.PollMax < o.s.PollInitial {
		return fmt.Errorf("%w: --poll-initial and --poll-max must be positive, the first not above the second", ErrUsage)
	}
	if o.caFile != "" {
		b, err := os.ReadFile(o.caFile)
		if err != nil {
			return err
		}
		o.s.CAPEM = b
	}
	if o.storeKeys {
		o.s.AccessKeyID, o.s.SecretAccessKey, o.s.SessionToken = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY"), os.Getenv("AWS_SESSION_TOKEN")
		if o.s.AccessKeyID == "" || o.s.SecretAccessKey == "" {
			return fmt.Errorf("--store-keys: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
		}
	}
	svc, done, err := o.conn.connect(ctx, true)
	if err != nil {
		return err
	}
	defer done()
	var rep awstarget.SetupReport
	out, err := svc.Register(ctx, &api.RegisterInput{Settings: o.s, CreateRole: o.createRole, FixBucket: o.fixBucket})
	if out != nil {
		rep = out.Report
	}
	if o.json {
		if perr := printJSON(env.Stdout, rep); perr != nil {
			return perr
		}
		return err
	}
	if err != nil {
		// Say exactly what the failed attempt changed in the account.
		for _, c := range rep.Changes {
			fmt.Fprintf(env.Stdout, "changed before the failure: %s\n", c)
		}
		return err
	}
	fmt.Fprintf(env.Stdout, "registered with AWS account %s in %s\nstaging bucket: %s\nservice role:   %s\n", rep.Account, rep.Region, rep.Bucket, rep.RoleName)
	for _, c := range rep.Changes {
		fmt.Fprintf(env.Stdout, "changed: %s\n", c)
	}
	if len(rep.Changes) == 0 {
		fmt.Fprintln(env.Stdout, "nothing to change: the account was already set up")
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(env.Stdout, "warning: %s\n", w)
	}
	if p := out.Preflight; p != nil {
		fmt.Fprintf(env.Stdout, "preflight: the account is %s\n", p.Status)
		printFindings(env.Stdout, p.Findings)
	}
	if rep.RoleDocuments != nil {
		rd := rep.RoleDocuments
		fmt.Fprintf(env.Stdout, "\nthe role %s must be created by an administrator:\n\ntrust policy (aws iam create-role --role-name %s --assume-role-policy-document file://trust.json):\n%s\n\ninline policy %s (aws iam put-role-policy --role-name %s --policy-name %s --policy-document file://policy.json):\n%s\n",
			rd.RoleName, rd.RoleName, rd.TrustPolicy, rd.PolicyName, rd.RoleName, rd.PolicyName, rd.Policy)
	}
	return nil
}
