package daemon

import (
	"context"
	"errors"

	"github.com/rehost/rehost/pkg/store"
)

// Registered reports whether a registration is stored (whether or not it
// still works).
func (d *Daemon) Registered(ctx context.Context) (bool, error) {
	_, err := d.Store.GetSetting(ctx, settingAWS)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
