// Command rehost-lab runs the rehost demo and the test peers it replicates
// against (simulated vCenter, S3, AWS) as standalone processes. It is not
// part of the appliance: the product is connector/cmd/rehost.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/internal/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := lab.Main(ctx, cli.OSEnv(), os.Args[1:])
	stop()
	os.Exit(code)
}
