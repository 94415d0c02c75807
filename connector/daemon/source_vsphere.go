package daemon

import (
	"context"
	"log/slog"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/vsphere"
	"github.com/rehost/rehost/pkg/store"
)

func init() {
	registerSourceKind(store.SourceVSphere, func(ctx context.Context, s store.Source, secret []byte, _ *slog.Logger) (source.Source, error) {
		return vsphere.New(ctx, vsphere.Config{URL: s.Endpoint, User: s.User, Password: string(secret), Thumbprint: s.Thumbprint, Insecure: s.Insecure})
	})
}
