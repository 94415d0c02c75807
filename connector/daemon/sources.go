package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// TestSource connects to a stored source and logs in, as a run would, and
// says how long that took.
func (d *Daemon) TestSource(ctx context.Context, id string) (time.Duration, error) {
	start := time.Now()
	src, err := d.OpenSource(ctx, id)
	if err != nil {
		return 0, err
	}
	src.Close()
	return time.Since(start), nil
}

// RemoveSource removes a source and its servers from the catalog. A source
// whose servers have replication jobs that are not deleted is refused,
// naming them. Servers whose deleted jobs keep their history stay, and so
// does the source then (it is reported).
func (d *Daemon) RemoveSource(ctx context.Context, id string) error {
	src, err := d.Store.GetSource(ctx, id)
	if err != nil {
		return fmt.Errorf("remove source: %w", err)
	}
	servers, err := d.Store.ListServers(ctx, store.ServerFilter{SourceID: id})
	if err != nil {
		return fmt.Errorf("remove source %q: %w", src.Name, err)
	}
	var kept int
	for _, s := range servers {
		jobs, err := d.Store.ListJobs(ctx, store.JobFilter{ServerID: s.ServerID})
		if err != nil {
			return fmt.Errorf("remove source %q: %w", src.Name, err)
		}
		for _, j := range jobs {
			if j.State != store.JobDeleted {
				return fmt.Errorf("%w: remove source %q: server %q has replication job %s (%s): delete it first ('rehost job delete %s')",
					store.ErrConflict, src.Name, s.Name, j.ReplicationJobID, j.State, j.ReplicationJobID)
			}
		}
		if len(jobs) > 0 {
			kept++
			continue
		}
		if err := d.Store.DeleteServer(ctx, s.ServerID); err != nil && !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("remove source %q: server %q: %w", src.Name, s.Name, err)
		}
	}
	if kept > 0 {
		return fmt.Errorf("%w: remove source %q: %d of its servers keep the history of deleted replication jobs, so the source stays (its other servers were removed from the catalog)",
			store.ErrConflict, src.Name, kept)
	}
	d.forgetCatalog(id)
	if err := d.Store.DeleteSource(ctx, id); err != nil {
		return fmt.Errorf("remove source %q: %w", src.Name, err)
	}
	return nil
}
