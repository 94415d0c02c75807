package daemon

import (
	"context"
	"log/slog"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/store"
)

// A connector opens a stored source of one kind. secret is the source's
// credential, unsealed; a connector must not log it.
type connector func(ctx context.Context, s store.Source, secret []byte, log *slog.Logger) (source.Source, error)

// connectors holds one connector per source kind. Each kind lives in a file
// of its own (source_vsphere.go, …) that registers it in an init function,
// so adding a kind touches no other file of the daemon.
var connectors = map[store.SourceKind]connector{}

func registerSourceKind(k store.SourceKind, c connector) {
	if _, dup := connectors[k]; dup {
		panic("daemon: source kind registered twice: " + string(k))
	}
	connectors[k] = c
}
