package cli

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "app template",
		Usage:   "APP [--format json|yaml] [--out FILE]",
		Summary: "generate an application's CloudFormation template, checked against AWS; also stored in the staging bucket (GenerateTemplate)",
		Flags:   onApp[appTemplateOptions],
	})
}

type appTemplateOptions struct {
	format string
	out    string
}

func (o *appTemplateOptions) flags(fs *flag.FlagSet) {
	fs.StringVar(&o.format, "format", "json", "json or yaml")
	fs.StringVar(&o.out, "out", "", "write it to FILE (default: standard output)")
}

func (o *appTemplateOptions) run(ctx context.Context, env Env, svc api.Service, a api.AppSummary) error {
	out, err := svc.GenerateTemplate(ctx, &api.GenerateTemplateInput{AppID: a.AppID, TemplateFormat: o.format})
	if err != nil {
		return err
	}
	if o.out == "" {
		_, err = fmt.Fprint(env.Stdout, out.RehostTemplateBody)
	} else {
		err = os.WriteFile(o.out, []byte(out.RehostTemplateBody), 0o644)
	}
	if err == nil && out.S3Location != nil {
		fmt.Fprintf(env.Stderr, "stored at s3://%s/%s\n", out.S3Location.Bucket, out.S3Location.Key)
	}
	return err
}
