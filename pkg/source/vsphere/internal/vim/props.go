package vim

import (
	"context"
	"fmt"
	"time"
)

// PropSpec asks for properties (paths, "config.hardware.device") of the
// objects of one type.
type PropSpec struct {
	Type  string
	Paths []string
}

// ObjectSpec starts a retrieval at Obj; with Traverse set it goes on to
// the objects that property names (ContainerView.view), skipping Obj itself
// when Skip.
type ObjectSpec struct {
	Obj      Ref
	Skip     bool
	Traverse *Traversal
}

// Traversal follows a property of an object type to other objects.
type Traversal struct{ Type, Path string }

// Object is a retrieved object and its properties by path; Missing lists
// the paths vCenter could not read, with the fault it gave.
type Object struct {
	Ref     Ref
	Props   map[string]*Node
	Missing map[string]string
}

// Retrieve reads properties of objects with RetrievePropertiesEx, following
// its continuation tokens when vCenter pages the answer.
func (c *Client) Retrieve(ctx context.Context, objs []ObjectSpec, props []PropSpec) ([]Object, error) {
	var out []Object
	err := c.RetrievePages(ctx, objs, props, 0, func(page []Object) error {
		out = append(out, page...)
		return nil
	})
	return out, err
}

// RetrievePages reads properties of objects page by page: each answer of
// RetrievePropertiesEx and of the ContinueRetrievePropertiesEx calls its
// token leads to holds at most maxObjects objects (0: as many as vCenter
// sends at once), and fn sees each page before the next is asked for, so
// a caller that keeps only what it needs of each holds one page at a time.
// An error of fn stops the retrieval (its remaining pages are cancelled)
// and is returned.
func (c *Client) RetrievePages(ctx context.Context, objs []ObjectSpec, props []PropSpec, maxObjects int, fn func([]Object) error) error {
	var options []E
	if maxObjects > 0 {
		options = append(options, Int("maxObjects", int64(maxObjects)))
	}
	res, err := c.Call(ctx, "RetrievePropertiesEx", c.Content.PropertyCollector, El("specSet", filterSpec(objs, props)...), El("options", options...))
	if err != nil {
		return err
	}
	for {
		ret := res.Child("returnval")
		page := objectsOf(ret.Children("objects"))
		token := ret.Child("token").String()
		res = nil
		if err := fn(page); err != nil {
			if token != "" {
				if _, cerr := c.Call(context.WithoutCancel(ctx), "CancelRetrievePropertiesEx", c.Content.PropertyCollector, Str("token", token)); cerr != nil {
					return fmt.Errorf("%w (and cancelling the rest of the retrieval failed: %v)", err, cerr)
				}
			}
			return err
		}
		if token == "" {
			return nil
		}
		if res, err = c.Call(ctx, "ContinueRetrievePropertiesEx", c.Content.PropertyCollector, Str("token", token)); err != nil {
			return err
		}
	}
}

// filterSpec is the content of a PropertyFilterSpec: the properties to read
// and the objects to read them of.
func filterSpec(objs []ObjectSpec, props []PropSpec) []E {
	var spec []E
	for _, p := range props {
		ps := []E{Str("type", p.Type)}
		for _, path := range p.Paths {
			ps = append(ps, Str("pathSet", path))
		}
		spec = append(spec, El("propSet", ps...))
	}
	for _, o := range objs {
		os := []E{Mor("obj", o.Obj)}
		if o.Skip {
			os = append(os, Bool("skip", true))
		}
		if o.Traverse != nil {
			os = append(os, Typed("selectSet", "TraversalSpec",
				Str("type", o.Traverse.Type), Str("path", o.Traverse.Path), Bool("skip", false)))
		}
		spec = append(spec, El("objectSet", os...))
	}
	return spec
}

// objectsOf reads ObjectContents.
func objectsOf(ns []*Node) []Object {
	out := make([]Object, 0, len(ns))
	for _, o := range ns {
		obj := Object{Ref: o.Child("obj").Ref(), Props: map[string]*Node{}}
		for _, p := range o.Children("propSet") {
			obj.Props[p.Child("name").String()] = p.Child("val")
		}
		for _, m := range o.Children("missingSet") {
			if obj.Missing == nil {
				obj.Missing = map[string]string{}
			}
			obj.Missing[m.Child("path").String()] = m.Path("fault", "fault").Type()
		}
		out = append(out, obj)
	}
	return out
}

// Get reads properties of the given objects.
func (c *Client) Get(ctx context.Context, refs []Ref, paths ...string) ([]Object, error) {
	seen := map[string]bool{}
	var objs []ObjectSpec
	var props []PropSpec
	for _, r := range refs {
		objs = append(objs, ObjectSpec{Obj: r})
		if !seen[r.Type] {
			seen[r.Type] = true
			props = append(props, PropSpec{Type: r.Type, Paths: paths})
		}
	}
	return c.Retrieve(ctx, objs, props)
}

// poll reads the properties of one object until done says it has what it
// waits for, polling quickly at first, then every second.
func (c *Client) poll(ctx context.Context, ref Ref, paths []string, done func(Object) bool) error {
	wait := 50 * time.Millisecond
	for {
		objs, err := c.Get(ctx, []Ref{ref}, paths...)
		if err != nil {
			return err
		}
		if len(objs) != 1 {
			return &Fault{Name: "ManagedObjectNotFound", Message: fmt.Sprintf("%s is gone", ref)}
		}
		if done(objs[0]) {
			return nil
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(wait):
		}
		wait = min(wait*3/2, time.Second)
	}
}

// WaitTask waits for a task to end and returns its result (nil when it has
// none); a failed task's error is a *Fault.
func (c *Client) WaitTask(ctx context.Context, task Ref) (*Node, error) {
	var info *Node
	err := c.poll(ctx, task, []string{"info"}, func(o Object) bool {
		info = o.Props["info"]
		switch info.Child("state").String() {
		case "success", "error":
			return true
		}
		return false
	})
	if err != nil {
		return nil, err
	}
	if info.Child("state").String() == "error" {
		return nil, MethodFault(info.Child("error"))
	}
	return info.Child("result"), nil
}

// WaitLease waits for an NFC lease to leave its initializing state and
// returns its info once ready; a lease in error is a *Fault.
func (c *Client) WaitLease(ctx context.Context, lease Ref) (*Node, error) {
	var o Object
	err := c.poll(ctx, lease, []string{"state", "info", "error"}, func(got Object) bool {
		o = got
		return got.Props["state"].String() != "initializing"
	})
	if err != nil {
		return nil, err
	}
	switch state := o.Props["state"].String(); state {
	case "ready":
		return o.Props["info"], nil
	case "error":
		if f := MethodFault(o.Props["error"]); f != nil {
			return nil, f
		}
	}
	return nil, fmt.Errorf("nfc lease %s is %s, not ready", lease.Value, o.Props["state"].String())
}
