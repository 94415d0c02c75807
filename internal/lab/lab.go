// Package lab holds the verbs of rehost-lab: the demo and the test peers
// (the AWS emulator, the simulated vCenter, versitygw behind its front) as
// processes of their own, and the count of what they hold, so anyone can
// replicate against them with the product binary, rehost, or run a kill -9
// campaign against it. None of this is linked into rehost.
package lab

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/rehost/rehost/connector/cli"
)

// Program is the rehost-lab command; each file registers its verb.
var Program = cli.NewProgram("rehost-lab", "the rehost demo and its test peers (simulated vCenter, S3, AWS) on loopback")

// Main runs the rehost-lab verb named by args and returns the exit code.
func Main(ctx context.Context, env cli.Env, args []string) int { return Program.Main(ctx, env, args) }

// printInfo prints what a peer verb serves: one JSON line with --json, else
// text; the keys printed are the peer's own, valid only against it.
func printInfo(w io.Writer, asJSON bool, info any, text string) {
	if asJSON {
		b, _ := json.Marshal(info)
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	fmt.Fprint(w, text)
}

// trusting returns an HTTP client trusting the CA in pemFile besides the
// system roots: a peer's self-signed certificate.
func trusting(pemFile string) (*http.Client, error) {
	pem, err := os.ReadFile(pemFile)
	if err != nil {
		return nil, err
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", pemFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return &http.Client{Transport: tr}, nil
}

func jsonIndent(v any) ([]byte, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	return append(b, '\n'), err
}

func noArgs(args []string) error {
	if len(args) != 0 {
		return fmt.Errorf("unexpected arguments %q: %w", args, cli.ErrUsage)
	}
	return nil
}
