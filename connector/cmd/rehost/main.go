// Command rehost is the rehost connector: the appliance daemon (rehost serve)
// and every CLI verb.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/rehost/rehost/connector/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, cli.OSEnv(), os.Args[1:])
	stop()
	os.Exit(code)
}
