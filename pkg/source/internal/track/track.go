// Package track holds what the sources share to implement
// source.ChangeTracker: the form of their change ids and the paging of
// changed areas.
package track

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

// Sector is the alignment of every area a source reports.
const Sector = 512

// idPrefix versions the change id form, so a later form can tell an old one
// and refuse it (a resync) rather than misread it.
const idPrefix = "v1:"

// ID is a change id as the sources hand it out: the disk's capacity at the
// checkpoint (so a later query sees a resize) and the platform's own id
// (a vSphere change id, a Hyper-V RCT id, an Azure snapshot).
func ID(capacity int64, native string) string {
	return idPrefix + strconv.FormatInt(capacity, 10) + ":" + native
}

// ParseID splits a change id made by ID; a malformed one (not rehost's, or
// from another form) is a *source.ResyncError for disk.
func ParseID(diskKey, id string) (capacity int64, native string, err error) {
	rest, ok := strings.CutPrefix(id, idPrefix)
	c, n, ok2 := strings.Cut(rest, ":")
	capacity, perr := strconv.ParseInt(c, 10, 64)
	if !ok || !ok2 || perr != nil || capacity <= 0 || n == "" {
		return 0, "", &source.ResyncError{Disk: diskKey, Since: id, Reason: "the recorded change id is not one this source hands out"}
	}
	return capacity, n, nil
}

// Resized checks a disk's capacity now against the capacity at its base: a
// shrunk disk cannot be diffed (*source.ResyncError).
func Resized(diskKey, since string, before, now int64) error {
	if now < before {
		return &source.ResyncError{Disk: diskKey, Since: since,
			Reason: fmt.Sprintf("the disk shrank from %d to %d bytes since the last run", before, now)}
	}
	return nil
}

// Fetch returns one page of a source's areas, in ascending order, and
// whether it was the last page. A failed fetch must leave its position, so
// that the next call asks for the same page again.
type Fetch func(ctx context.Context) (areas []disk.Extent, last bool, err error)

// First asks f for its first page now, so that what the source refuses (a
// change id) is the caller's error rather than the first Next's, and
// returns a Fetch that answers that page first.
func First(ctx context.Context, f Fetch) (Fetch, error) {
	page, last, err := f(ctx)
	if err != nil {
		return nil, err
	}
	pending := true
	return func(ctx context.Context) ([]disk.Extent, bool, error) {
		if pending {
			pending = false
			return page, last, nil
		}
		return f(ctx)
	}, nil
}

// Pages is source.Areas over a Fetch: it clips the areas to [From,
// Capacity), rounds them out to sectors, merges what overlaps the page
// before, and refuses areas out of order or outside the disk (a source
// fault, never silently dropped).
type Pages struct {
	What           string // "changed areas of disk 2000 of vm x", for errors
	From, Capacity int64
	Fetch          Fetch

	pos  int64 // end of the last area returned
	last int64 // start of the last area the source answered
	done bool
}

// NewPages starts the stream at from.
func NewPages(what string, from, capacity int64, f Fetch) *Pages {
	return &Pages{What: what, From: from, Capacity: capacity, Fetch: f, pos: max(0, from/Sector*Sector)}
}

// Next implements source.Areas.
func (p *Pages) Next(ctx context.Context) ([]disk.Extent, error) {
	if p.done {
		return nil, io.EOF
	}
	areas, last, err := p.Fetch(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.What, err)
	}
	out := make([]disk.Extent, 0, len(areas))
	for _, a := range areas {
		if a.Length <= 0 || a.Offset < 0 || a.End() > p.Capacity {
			return nil, fmt.Errorf("%s: the source answered area %d+%d outside the %d-byte disk", p.What, a.Offset, a.Length, p.Capacity)
		}
		if a.Offset < p.last {
			return nil, fmt.Errorf("%s: the source answered area %d+%d out of order (after one at %d)", p.What, a.Offset, a.Length, p.last)
		}
		p.last = a.Offset
		start, end := max(a.Offset/Sector*Sector, p.pos), min((a.End()+Sector-1)/Sector*Sector, p.Capacity)
		if end <= start {
			continue // before From, or within what the area before covered
		}
		if n := len(out); n > 0 && out[n-1].End() == start {
			out[n-1].Length = end - out[n-1].Offset
		} else {
			out = append(out, disk.Extent{Offset: start, Length: end - start})
		}
		p.pos = end
	}
	if last {
		p.done = true
	}
	return out, nil
}

// All drains a stream; for tests and small disks only, since it holds the
// whole map.
func All(ctx context.Context, a source.Areas) ([]disk.Extent, error) {
	var out []disk.Extent
	for {
		page, err := a.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, page...)
	}
}
