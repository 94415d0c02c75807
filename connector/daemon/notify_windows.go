package daemon

import "context"

// NotifyServing does nothing on Windows, which has no such signal: the
// daemon picks changes up at its resync interval.
func NotifyServing(dir string) {}

// ResyncOnSignal does nothing on Windows (see NotifyServing).
func (d *Daemon) ResyncOnSignal(ctx context.Context) {}
