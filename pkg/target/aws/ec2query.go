package aws

import (
	"context"
	"maps"
	"net/url"
	"slices"
	"strconv"
)

// EC2 is reached over its Query protocol (wire.go) for every operation
// the target calls: the SDK's EC2 client linked some 800 operations and
// their types into the product binary for the twenty it uses. The
// parameters below are spelled as EC2's API reference spells them (lists
// flattened as Name.1, Name.2, …), the answers decoded from EC2's XML.

// filter is an EC2 filter: a resource matches when its name has one of the
// values.
type filter struct {
	name   string
	values []string
}

// setList adds values as key.1, key.2, ….
func setList(v url.Values, key string, values []string) {
	for i, s := range values {
		v.Set(key+"."+strconv.Itoa(i+1), s)
	}
}

// setFilters adds filters as key.N.Name and key.N.Value.M (key is Filter,
// or Filters for the import task queries).
func setFilters(v url.Values, key string, fs []filter) {
	for i, f := range fs {
		p := key + "." + strconv.Itoa(i+1) + "."
		v.Set(p+"Name", f.name)
		setList(v, p+"Value", f.values)
	}
}

// setTags adds tags as key.N.Key and key.N.Value, in key order.
func setTags(v url.Values, key string, tags map[string]string) {
	for i, k := range slices.Sorted(maps.Keys(tags)) {
		p := key + "." + strconv.Itoa(i+1) + "."
		v.Set(p+"Key", k)
		v.Set(p+"Value", tags[k])
	}
}

// setTagSpec tags the resource an action makes (none when tags is empty).
func setTagSpec(v url.Values, resource string, tags map[string]string) {
	if len(tags) == 0 {
		return
	}
	v.Set("TagSpecification.1.ResourceType", resource)
	setTags(v, "TagSpecification.1.Tag", tags)
}

// setOpt adds a parameter that is left out when empty.
func setOpt(v url.Values, key, value string) {
	if value != "" {
		v.Set(key, value)
	}
}

// ec2Tag is an item of a tagSet.
type ec2Tag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func ec2Tags(ts []ec2Tag) map[string]string {
	m := map[string]string{}
	for _, t := range ts {
		m[t.Key] = t.Value
	}
	return m
}

// ec2Page is a Describe answer that may continue on another page.
type ec2Page interface{ next() string }

// ec2Pages sends a Describe action page by page, each page under the retry
// policy, and hands each to each. It follows nextToken until EC2 gives
// none, or the one it just sent (where the SDK's paginators stop too).
func ec2Pages[P ec2Page](ctx context.Context, t *Target, action string, params url.Values, each func(P)) error {
	q, err := t.ec2Query()
	if err != nil {
		return err
	}
	params = maps.Clone(params)
	if params == nil {
		params = url.Values{}
	}
	for {
		var page P
		if err := t.call(ctx, action, func(ctx context.Context) error {
			var zero P
			page = zero
			return q.Query(ctx, action, params, &page)
		}); err != nil {
			return err
		}
		each(page)
		tok := page.next()
		if tok == "" || tok == params.Get("NextToken") {
			return nil
		}
		params.Set("NextToken", tok)
	}
}

// ec2Call sends one EC2 action under the retry policy and decodes its
// answer into out (nil ignores it).
func (t *Target) ec2Call(ctx context.Context, action string, params url.Values, out any) error {
	q, err := t.ec2Query()
	if err != nil {
		return err
	}
	return t.call(ctx, action, func(ctx context.Context) error {
		return q.Query(ctx, action, params, out)
	})
}
