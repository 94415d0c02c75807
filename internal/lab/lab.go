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

// Program is the rehost-lab command.
var Program = cli.NewProgram("rehost-lab", "the rehost demo and its test peers (simulated vCenter, S3, AWS) on loopback")

// The rehost-lab verbs: one entry each; the function each names is in the
// verb's file (aws.go for aws, verify.go for verify-image).
func init() {
	Program.Register(
		cli.Command{
			Name:    "demo",
			Usage:   "[--dir DIR] [--json] [--exit]",
			Summary: "replicate simulated vCenter VMs to emulated AWS on loopback, end to end, and verify the AMIs' content",
			Flags:   demoFlags,
		},
		cli.Command{
			Name:  "aws",
			Usage: "--data DIR [--s3 S3.json | --s3-endpoint URL --s3-access-key KEY [--s3-ca FILE]] [--listen ADDR] [--region R] [--simulated-import-wait D] [--instance-boot-time D] [--delay OP=D,…] [--json]",
			Summary: "run the AWS emulator (EC2 VM Import, AMIs, snapshots, EBS direct, IAM, STS) on loopback " +
				"until interrupted, printing its endpoint and keys",
			Flags: awsFlags,
		},
		cli.Command{
			Name:  "azure",
			Usage: "--dir DIR [--demo] [--json]",
			Summary: "run a faked Azure subscription (Resource Manager and Entra ID fakes, disk data in Azurite behind a front " +
				"that answers page-range diffs) until interrupted, printing how to reach it; its write URL changes a VM's disk on request",
			Flags: azureFlags,
		},
		cli.Command{
			Name:  "hyperv",
			Usage: "[--demo] [--json]",
			Summary: "run a simulated Hyper-V host (WinRM answering rehost's scripts, its VM files served by Samba, " +
				"resilient change tracking) until interrupted, printing how to reach it; its write URL changes a VM's disk on request",
			Flags: hypervFlags,
		},
		cli.Command{
			Name:  "postgres",
			Usage: "--dir DIR [--port PORT] [--database NAME] [--json]",
			Summary: "run PostgreSQL (Debian's, unprivileged, TLS and a password) for a fleet of connectors, until interrupted, " +
				"printing the store URL, password file and CA file to give rehost serve",
			Flags: postgresFlags,
		},
		cli.Command{
			Name:  "s3",
			Usage: "--dir DIR [--listen ADDR] [--plain-listen ADDR] [--region R] [--json]",
			Summary: "run versitygw (S3) behind the front that enforces bucket encryption, lifecycle and policy, " +
				"until interrupted, printing its endpoints and keys",
			Flags: s3Flags,
		},
		cli.Command{
			Name:  "vcenter",
			Usage: "--dir DIR [--listen ADDR] [--demo] [--user USER] [--lease-timeout D] [--json]",
			Summary: "run a simulated vCenter (govmomi's simulator with snapshot export, CBT and real guest disks) " +
				"until interrupted, printing its URL and credentials; its write URL changes a VM's disk on request",
			Flags: vcenterFlags,
		},
		cli.Command{
			Name:    "leftovers",
			Usage:   "--vcenter URL [--vcenter-thumbprint T] --s3 URL [--s3-ca FILE] --aws URL [--bucket B] [--json]",
			Summary: "count what separately started peers still hold: leases, VM snapshots, uploads, objects, imports, EBS snapshots (orphan, pending, replicas), AMIs per run, stacks, instances",
			Flags:   leftoversFlags,
		},
		cli.Command{
			Name:    "verify-image",
			Usage:   "--key rehost-release.pub FILE...",
			Summary: "check appliance images (OVA, VHD, VHDX, raw, system image, upgrade manifest) against their .sha256 and .sig with the release key",
			Flags:   verifyImageFlags,
		},
	)
}

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
