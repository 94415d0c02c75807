//go:build !windows

package daemon

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// NotifyServing tells the daemon serving dir, if one does, that the CLI
// changed jobs or runs, so it resyncs now rather than at its next resync
// interval. Failing to is harmless: the resync comes anyway.
func NotifyServing(dir string) {
	info, ok, err := Serving(dir)
	if err != nil || !ok || info.PID <= 0 || info.PID == os.Getpid() {
		return
	}
	syscall.Kill(info.PID, syscall.SIGUSR1)
}

// ResyncOnSignal makes the scheduler resync, and the launcher look at the
// launches, whenever the process receives NotifyServing's signal, until ctx
// ends.
func (d *Daemon) ResyncOnSignal(ctx context.Context) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case <-ctx.Done():
				return
			case <-ch:
				d.Sched.Resync()
				d.Apps.Wake()
				d.WakeBandwidth()
			}
		}
	}()
}
