package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/azure"
	"github.com/rehost/rehost/pkg/store"
)

// An Azure source keeps its subscription, tenant, client id, sign-in
// method and cloud in Options (azure.Config as JSON); the client secret or
// certificate is the sealed secret.
func init() {
	registerSourceKind(store.SourceAzure, func(ctx context.Context, s store.Source, secret []byte, log *slog.Logger) (source.Source, error) {
		var cfg azure.Config
		if len(s.Options) > 0 {
			if err := json.Unmarshal(s.Options, &cfg); err != nil {
				return nil, fmt.Errorf("azure source %q: read its options: %w", s.Name, err)
			}
		}
		cfg.Secret, cfg.Log = secret, log.With("source", s.Name)
		return azure.New(ctx, cfg)
	})
}
