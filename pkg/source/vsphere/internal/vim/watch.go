package vim

import (
	"context"
	"time"
)

// Collector is a property collector of the session's own
// (CreatePropertyCollector): its filters and the updates waited for on it
// are apart from the session's other retrievals, which a long wait on the
// shared collector would hold up.
type Collector struct {
	c   *Client
	Ref Ref
}

// NewCollector creates a property collector for this session; Destroy
// removes it with its filters.
func (c *Client) NewCollector(ctx context.Context) (*Collector, error) {
	res, err := c.Call(ctx, "CreatePropertyCollector", c.Content.PropertyCollector)
	if err != nil {
		return nil, err
	}
	return &Collector{c: c, Ref: res.Child("returnval").Ref()}, nil
}

// Destroy removes the collector and its filters.
func (pc *Collector) Destroy(ctx context.Context) error {
	_, err := pc.c.Call(ctx, "DestroyPropertyCollector", pc.Ref)
	return err
}

// CreateFilter makes the collector report changes of props of the objects
// objs lead to; only the properties that changed are reported
// (partialUpdates).
func (pc *Collector) CreateFilter(ctx context.Context, objs []ObjectSpec, props []PropSpec) (Ref, error) {
	res, err := pc.c.Call(ctx, "CreateFilter", pc.Ref, El("spec", filterSpec(objs, props)...), Bool("partialUpdates", true))
	if err != nil {
		return Ref{}, err
	}
	return res.Child("returnval").Ref(), nil
}

// Update kinds: an object entered the filter's set (it is new, or the
// filter's first answer), changed, or left it (it is gone).
const (
	Enter  = "enter"
	Modify = "modify"
	Leave  = "leave"
)

// ObjectUpdate is one object's change: its kind and, for enter and modify,
// the properties that changed (by path; a nil value for a property
// removed).
type ObjectUpdate struct {
	Ref     Ref
	Kind    string
	Changes map[string]*Node
}

// UpdateSet is an answer of WaitForUpdatesEx: the version to wait from
// next, and whether more updates are waiting already (Truncated).
type UpdateSet struct {
	Version   string
	Truncated bool
	Objects   []ObjectUpdate
}

// Wait returns the updates of the collector's filters since version ("":
// every object of them, as entering), waiting up to maxWait (at least a
// second) for some; none in that time is an UpdateSet with no objects and
// the same version. At most maxObjects updates come at once (0: the
// server's choice); Truncated says more wait. An InvalidCollectorVersion
// fault means the version is no longer known: start again from "".
func (pc *Collector) Wait(ctx context.Context, version string, maxWait time.Duration, maxObjects int) (UpdateSet, error) {
	opts := []E{Int("maxWaitSeconds", int64(max(maxWait/time.Second, 1)))}
	if maxObjects > 0 {
		opts = append(opts, Int("maxObjectUpdates", int64(maxObjects)))
	}
	res, err := pc.c.Call(ctx, "WaitForUpdatesEx", pc.Ref, Str("version", version), El("options", opts...))
	if err != nil {
		return UpdateSet{}, err
	}
	ret := res.Child("returnval")
	if ret == nil {
		return UpdateSet{Version: version}, nil
	}
	set := UpdateSet{Version: ret.Child("version").String(), Truncated: ret.Child("truncated").Bool()}
	for _, f := range ret.Children("filterSet") {
		for _, o := range f.Children("objectSet") {
			u := ObjectUpdate{Ref: o.Child("obj").Ref(), Kind: o.Child("kind").String(), Changes: map[string]*Node{}}
			for _, ch := range o.Children("changeSet") {
				var v *Node
				if ch.Child("op").String() != "remove" {
					v = ch.Child("val")
				}
				u.Changes[ch.Child("name").String()] = v
			}
			set.Objects = append(set.Objects, u)
		}
	}
	return set, nil
}
