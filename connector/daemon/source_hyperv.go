package daemon

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/hyperv"
	"github.com/rehost/rehost/pkg/store"
)

// Hyper-V hosts (standalone or cluster nodes) and SCVMM servers: the
// endpoint is the host or server, the secret the account's password, and
// the kind's settings (authentication, shares, cluster nodes) are
// hyperv.Options in store.Source.Options.
func init() {
	for kind, manager := range map[store.SourceKind]string{store.SourceHyperV: hyperv.ManagerHyperV, store.SourceSCVMM: hyperv.ManagerSCVMM} {
		registerSourceKind(kind, func(ctx context.Context, s store.Source, secret []byte, log *slog.Logger) (source.Source, error) {
			o, err := hyperv.ParseOptions(s.Options)
			if err != nil {
				return nil, fmt.Errorf("source %q: %w", s.Name, err)
			}
			cfg := hyperv.Config{Manager: manager, Endpoint: s.Endpoint, User: s.User, Password: string(secret),
				Thumbprint: s.Thumbprint, Insecure: s.Insecure, Log: log}
			o.Apply(&cfg)
			return hyperv.New(ctx, cfg)
		})
	}
}
