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
		Flags:   appTemplateFlags,
	})
}

type appTemplateOptions struct {
	conn   *connFlags
	format string
	out    string
}

func appTemplateFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &appTemplateOptions{conn: addConnFlags(fs)}
	fs.StringVar(&o.format, "format", "json", "json or yaml")
	fs.StringVar(&o.out, "out", "", "write it to FILE (default: standard output)")
	return o.conn.with(oneArg("app (name or id)"), o.run)
}

func (o *appTemplateOptions) run(ctx context.Context, env Env, svc api.Service, args []string) error {
	a, err := resolveApp(ctx, svc, args[0])
	if err != nil {
		return err
	}
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
