// Command build makes the rehost connector appliance (see package
// appliance/build): make appliance runs it with the version and time stamp
// taken from git.
package main

import (
	"context"
	"crypto/ed25519"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"time"

	"github.com/rehost/rehost/appliance/build"
	"github.com/rehost/rehost/pkg/sshsig"
)

func main() {
	root, _ := os.Getwd()
	o := build.Options{Log: os.Stderr}
	flag.StringVar(&o.Root, "root", root, "repository root")
	flag.StringVar(&o.Out, "out", filepath.Join(root, "appliance", "out"), "output directory")
	flag.StringVar(&o.Cache, "cache", filepath.Join(root, "appliance", "cache"), "directory for the downloaded Debian packages")
	flag.StringVar(&o.Version, "version", "", "the connector's version (required)")
	flag.Int64Var(&o.DiskSize, "disk-size", 1<<30, "virtual disk size in bytes")
	flag.BoolVar(&o.SystemOnly, "system-only", false, "make only the system partition image (an upgrade)")
	flag.Parse()
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	if epoch == "" {
		fmt.Fprintf(os.Stderr, "build: SOURCE_DATE_EPOCH is not set: set it to the commit time (make appliance does: git log -1 --format=%%ct)\n")
		os.Exit(2)
	}
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: SOURCE_DATE_EPOCH=%q: not a number of seconds\n", epoch)
		os.Exit(2)
	}
	o.Epoch = time.Unix(sec, 0).UTC()
	o.Key, o.DevKey, err = build.LoadSigningKey(os.Getenv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(2)
	}
	if o.DevKey {
		fmt.Fprintf(os.Stderr, "build: no release key (%s or %s): signing with the DEVELOPMENT key, which is public —\n"+
			"build: anyone can sign an image this appliance installs. Not for production; see docs/appliance.md.\n", build.EnvKeyFile, build.EnvKey)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	start := time.Now()
	res, err := build.Build(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "appliance %s: kernel %s, %d modules, initramfs %d bytes, signed by %s%s, built in %s\n",
		o.Version, res.KernelVersion, res.Modules, res.InitramfsSize, sshsig.Fingerprint(o.Key.Public().(ed25519.PublicKey)),
		map[bool]string{true: " (the development key)"}[o.DevKey], time.Since(start).Round(time.Second))
	for _, f := range res.Files {
		if st, err := os.Stat(f); err == nil {
			fmt.Printf("%12d  %s\n", st.Size(), f)
		}
	}
}
