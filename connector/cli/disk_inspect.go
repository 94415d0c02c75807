package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/rehost/rehost/pkg/disk"
)

func init() {
	Register(Command{
		Name:    "disk inspect",
		Usage:   "[--json] FILE",
		Summary: "show a disk image's format, virtual size and allocation",
		Flags:   diskInspectFlags,
	})
}

type diskInspectOptions struct {
	json bool
}

func diskInspectFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &diskInspectOptions{}
	fs.BoolVar(&o.json, "json", false, "print the image information as JSON")
	return o.run
}

func (o *diskInspectOptions) run(_ context.Context, env Env, args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want exactly one FILE, got %d arguments: %w", len(args), ErrUsage)
	}
	img, closer, err := disk.OpenFile(args[0])
	if err != nil {
		return fmt.Errorf("inspect %s: %w", args[0], err)
	}
	defer closer.Close()
	info := img.Info()
	if o.json {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	sub := info.Subformat
	if sub == "" {
		sub = "-"
	}
	fmt.Fprintf(env.Stdout, "format:       %s\n", info.Format)
	fmt.Fprintf(env.Stdout, "subformat:    %s\n", sub)
	fmt.Fprintf(env.Stdout, "virtual size: %s (%d bytes)\n", bytesIEC(info.VirtualSize), info.VirtualSize)
	fmt.Fprintf(env.Stdout, "allocated:    %s (%d bytes)\n", bytesIEC(info.AllocatedBytes), info.AllocatedBytes)
	fmt.Fprintf(env.Stdout, "extents:      %d\n", info.ExtentCount)
	return nil
}
