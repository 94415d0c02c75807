package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/client"
)

func init() {
	Register(Command{
		Name:    "login",
		Usage:   "--endpoint https://HOST[:PORT] --access-key-id ID (--fingerprint FP | --ca-file F) [--region R]",
		Summary: "save a connector's endpoint and an access key (secret from REHOST_SECRET_ACCESS_KEY or stdin) for the other verbs",
		Flags: func(fs *flag.FlagSet) func(context.Context, Env, []string) error {
			var l loginFile
			var caFile string
			fs.StringVar(&l.Endpoint, "endpoint", os.Getenv("REHOST_ENDPOINT"), "the connector's API, https://HOST[:PORT]")
			fs.StringVar(&l.AccessKeyID, "access-key-id", "", "an access key from 'rehost admin key create' on the appliance")
			fs.StringVar(&l.Fingerprint, "fingerprint", "", "the certificate's SHA-256 fingerprint, as 'rehost serve' printed it")
			fs.StringVar(&caFile, "ca-file", "", "PEM file of the CA that signed the connector's certificate")
			fs.StringVar(&l.Region, "region", os.Getenv("AWS_REGION"), "the connector's registration region (requests are signed for it)")
			return func(ctx context.Context, env Env, args []string) error {
				if err := noArgs(args); err != nil {
					return err
				}
				if l.Endpoint == "" || l.AccessKeyID == "" {
					return fmt.Errorf("%w: --endpoint and --access-key-id are required", ErrUsage)
				}
				if caFile != "" {
					b, err := os.ReadFile(caFile)
					if err != nil {
						return fmt.Errorf("--ca-file: %w", err)
					}
					l.CAPEM = b
				}
				secret, err := readSecret(env, "REHOST_SECRET_ACCESS_KEY", "secret access key")
				if err != nil {
					return err
				}
				l.SecretAccessKey = secret
				cl, err := client.New(client.Options{Endpoint: l.Endpoint, Region: l.Region, Fingerprint: l.Fingerprint, CAPEM: l.CAPEM,
					Credentials: credentials.NewStaticCredentialsProvider(l.AccessKeyID, secret, "")})
				if err != nil {
					return err
				}
				reg, err := cl.GetRegistration(ctx, &api.GetRegistrationInput{})
				if err != nil {
					return fmt.Errorf("log in to %s: %w", l.Endpoint, err)
				}
				p, err := loginPath()
				if err != nil {
					return err
				}
				if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
					return err
				}
				if err := writePrivateJSON(p, l); err != nil {
					return fmt.Errorf("save the login: %w", err)
				}
				fmt.Fprintf(env.Stdout, "logged in to %s", l.Endpoint)
				if reg.Registered {
					fmt.Fprintf(env.Stdout, " (registered in %s)", reg.Region)
				}
				fmt.Fprintf(env.Stdout, "; saved in %s\n", p)
				return nil
			}
		},
	})
}

// writePrivateJSON writes v to a file only its owner can read.
func writePrivateJSON(path string, v any) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return err
	}
	if err := printJSON(f, v); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
