package app

import (
	"cmp"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"

	"github.com/rehost/rehost/pkg/instancetype"
	"github.com/rehost/rehost/pkg/store"
)

// Rightsizing import: a CSV, as rightsizing tools export it, of server →
// instance type, subnet, security groups, volume type and tags fills an
// application's launch configuration. The first row names the columns (in
// any order and case; "instance type", "instance_type" and "instanceType"
// are one): server (its VM name or server id) is required, the others
// optional, and vpc is taken too. An empty cell leaves what is configured.
// Security groups and tags are separated by ";" (tags as key=value).
//
// Every row is checked before anything changes: an error names the row, the
// column and the value, and nothing is applied. A server left without an
// instance type gets the cheapest catalogue type that fits its CPUs and
// memory (instancetype.Suggest).

// Row is one CSV row, as read.
type Row struct {
	Line           int // 1 is the header
	Server         string
	InstanceType   string
	VPC, Subnet    string
	SecurityGroups []string
	VolumeType     string
	Tags           []store.Tag
	hasTags        bool
}

var columns = map[string]string{
	"server": "server", "servername": "server", "serverid": "server", "vm": "server", "vmname": "server",
	"instancetype": "instance type", "type": "instance type",
	"subnet": "subnet", "subnetid": "subnet",
	"vpc": "vpc", "vpcid": "vpc",
	"securitygroups": "security groups", "securitygroup": "security groups", "securitygroupids": "security groups",
	"volumetype": "volume type", "ebsvolumetype": "volume type",
	"tags": "tags",
}

var (
	typeRE   = regexp.MustCompile(`^[a-z][a-z0-9-]*\.[a-z0-9]+$`)
	subnetRE = regexp.MustCompile(`^subnet-[0-9a-f]{8,17}$`)
	vpcRE    = regexp.MustCompile(`^vpc-[0-9a-f]{8,17}$`)
	sgRE     = regexp.MustCompile(`^sg-[0-9a-f]{8,17}$`)
)

// VolumeTypes EBS offers.
var VolumeTypes = []string{"gp2", "gp3", "io1", "io2", "st1", "sc1", "standard"}

// ParseRightsizing reads a rightsizing CSV, checking each cell's form.
func ParseRightsizing(r io.Reader) ([]Row, error) {
	cr := csv.NewReader(r)
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, invalid("rightsizing CSV: it is empty: the first row names the columns (server, instance type, subnet, security groups, volume type, tags)")
	}
	if err != nil {
		return nil, invalid("rightsizing CSV: %v", err)
	}
	col := map[string]int{}
	for i, h := range header {
		key := strings.NewReplacer(" ", "", "_", "", "-", "").Replace(strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff"))))
		name, ok := columns[key]
		if !ok {
			return nil, invalid("rightsizing CSV: row 1, column %d: %q is not a column rehost knows (server, instance type, vpc, subnet, security groups, volume type, tags)", i+1, h)
		}
		if _, dup := col[name]; dup {
			return nil, invalid("rightsizing CSV: row 1: column %q is given twice", name)
		}
		col[name] = i
	}
	if _, ok := col["server"]; !ok {
		return nil, invalid("rightsizing CSV: row 1: there is no server column")
	}
	var rows []Row
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, invalid("rightsizing CSV: %v", err)
		}
		cell := func(name string) string {
			i, ok := col[name]
			if !ok || i >= len(rec) {
				return ""
			}
			return strings.TrimSpace(rec[i])
		}
		bad := func(name, why string) error {
			return invalid("rightsizing CSV: row %d, column %s: %q %s", line, name, cell(name), why)
		}
		if strings.Join(rec, "") == "" {
			continue
		}
		row := Row{Line: line, Server: cell("server"), InstanceType: cell("instance type"), VPC: cell("vpc"), Subnet: cell("subnet"),
			VolumeType: cell("volume type")}
		switch {
		case row.Server == "":
			return nil, bad("server", "is empty: name the server (its VM name or server id)")
		case row.InstanceType != "" && !typeRE.MatchString(row.InstanceType):
			return nil, bad("instance type", "is not an EC2 instance type (like m5.large)")
		case row.Subnet != "" && !subnetRE.MatchString(row.Subnet):
			return nil, bad("subnet", "is not a subnet id (subnet-…)")
		case row.VPC != "" && !vpcRE.MatchString(row.VPC):
			return nil, bad("vpc", "is not a VPC id (vpc-…)")
		case row.VolumeType != "" && !slices.Contains(VolumeTypes, row.VolumeType):
			return nil, bad("volume type", "is not an EBS volume type ("+strings.Join(VolumeTypes, ", ")+")")
		}
		for _, g := range splitList(cell("security groups")) {
			if !sgRE.MatchString(g) {
				return nil, invalid("rightsizing CSV: row %d, column security groups: %q is not a security group id (sg-…)", line, g)
			}
			row.SecurityGroups = append(row.SecurityGroups, g)
		}
		if t := cell("tags"); t != "" {
			row.hasTags = true
			for _, kv := range splitList(t) {
				k, v, ok := strings.Cut(kv, "=")
				k = strings.TrimSpace(k)
				if !ok || k == "" {
					return nil, invalid("rightsizing CSV: row %d, column tags: %q is not key=value", line, kv)
				}
				row.Tags = append(row.Tags, store.Tag{Key: k, Value: strings.TrimSpace(v)})
			}
		}
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, invalid("rightsizing CSV: there is no row after the header")
	}
	return rows, nil
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.FieldsFunc(s, func(r rune) bool { return r == ';' || r == '|' }) {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Sized says what a rightsizing import set for one server.
type Sized struct {
	ServerID, Name string
	InstanceType   string
	// Suggested: the type was chosen from the server's CPUs and memory.
	Suggested bool
	Row       int // 0: the server had no row
}

// Rightsize applies rows to the app's launch configuration (making a
// default one — each group in the app's order — when there is none) and
// returns the result; a is not changed. servers holds the app's servers.
// unknownTypes, when not nil, reports which instance types the region
// does not offer.
func Rightsize(ctx context.Context, a store.App, servers map[string]store.Server, rows []Row,
	unknownTypes func(ctx context.Context, types []string) ([]string, error)) (*store.LaunchConfig, []Sized, error) {
	lc := DefaultLaunchConfig(a)
	byName := map[string]string{}
	for id, s := range servers {
		byName[s.Name] = id
	}
	rowOf := map[string]Row{}
	for _, r := range rows {
		id := r.Server
		if _, ok := servers[id]; !ok {
			id = byName[r.Server]
		}
		if id == "" {
			return nil, nil, invalid("rightsizing CSV: row %d, column server: %q is not a server of app %q", r.Line, r.Server, a.Name)
		}
		if prev, dup := rowOf[id]; dup {
			return nil, nil, invalid("rightsizing CSV: row %d, column server: %q is already on row %d", r.Line, r.Server, prev.Line)
		}
		rowOf[id] = r
	}
	if unknownTypes != nil {
		var types []string
		for _, r := range rows {
			if r.InstanceType != "" && !slices.Contains(types, r.InstanceType) {
				types = append(types, r.InstanceType)
			}
		}
		unknown, err := unknownTypes(ctx, types)
		if err != nil {
			return nil, nil, err
		}
		for _, r := range rows {
			if slices.Contains(unknown, r.InstanceType) {
				return nil, nil, invalid("rightsizing CSV: row %d, column instance type: %q is not offered in this region", r.Line, r.InstanceType)
			}
		}
	}
	for gi := range lc.Groups {
		for si := range lc.Groups[gi].Servers {
			sl := &lc.Groups[gi].Servers[si]
			r, ok := rowOf[sl.ServerID]
			if !ok {
				continue
			}
			sl.InstanceType = cmp.Or(r.InstanceType, sl.InstanceType)
			sl.VPC = cmp.Or(r.VPC, sl.VPC)
			sl.Subnet = cmp.Or(r.Subnet, sl.Subnet)
			sl.VolumeType = cmp.Or(r.VolumeType, sl.VolumeType)
			if len(r.SecurityGroups) > 0 {
				sl.SecurityGroups = r.SecurityGroups
			}
			if r.hasTags {
				sl.Tags = r.Tags
			}
		}
	}
	var report []Sized
	if err := suggestTypes(lc, servers, &report); err != nil {
		return nil, nil, err
	}
	for i := range report {
		report[i].Row = rowOf[report[i].ServerID].Line
	}
	return lc, report, nil
}

// suggestTypes gives each server without an instance type the cheapest
// catalogued one that fits its CPUs and memory; report, when not nil,
// gets a line per server.
func suggestTypes(lc *store.LaunchConfig, servers map[string]store.Server, report *[]Sized) error {
	for gi := range lc.Groups {
		for si := range lc.Groups[gi].Servers {
			sl := &lc.Groups[gi].Servers[si]
			srv := servers[sl.ServerID]
			sz := Sized{ServerID: sl.ServerID, Name: srv.Name}
			if sl.InstanceType == "" {
				t, ok := instancetype.Suggest(srv.CPUs, srv.MemoryMiB)
				if !ok {
					return invalid("server %s has %d CPUs and %d MiB, more than any catalogued type: give its instance type", srv.Name, srv.CPUs, srv.MemoryMiB)
				}
				sl.InstanceType, sz.Suggested = t.Name, true
			}
			sz.InstanceType = sl.InstanceType
			if report != nil {
				*report = append(*report, sz)
			}
		}
	}
	return nil
}

// DefaultLaunchConfig is a copy of the app's launch configuration, made
// complete: every group (in the app's order, launch order 1, 2, …, when it
// has none) and every server of it, nothing else.
func DefaultLaunchConfig(a store.App) *store.LaunchConfig {
	lc := &store.LaunchConfig{}
	if a.Launch != nil {
		lc.RoleName, lc.AutoLaunch = a.Launch.RoleName, a.Launch.AutoLaunch
		if a.Launch.Test != nil {
			t := *a.Launch.Test
			lc.Test = &t
		}
	}
	old := map[string]store.GroupLaunch{}
	oldServer := map[string]store.ServerLaunch{}
	if a.Launch != nil {
		for _, g := range a.Launch.Groups {
			old[g.GroupID] = g
			for _, s := range g.Servers {
				oldServer[s.ServerID] = s
			}
		}
	}
	for i, g := range a.Groups {
		gl, ok := old[g.GroupID]
		if !ok {
			gl = store.GroupLaunch{GroupID: g.GroupID, LaunchOrder: i + 1}
		}
		gl.After = slices.Clone(gl.After)
		gl.Servers = nil
		for _, id := range g.ServerIDs {
			sl, ok := oldServer[id]
			if !ok {
				sl = store.ServerLaunch{ServerID: id}
			}
			sl.SecurityGroups, sl.Tags = slices.Clone(sl.SecurityGroups), slices.Clone(sl.Tags)
			gl.Servers = append(gl.Servers, sl)
		}
		lc.Groups = append(lc.Groups, gl)
	}
	return lc
}

// Describe summarises a rightsizing result for a person.
func (s Sized) String() string {
	how := fmt.Sprintf("row %d", s.Row)
	switch {
	case s.Suggested && s.Row == 0:
		how = "suggested from its CPUs and memory (no row)"
	case s.Suggested:
		how = fmt.Sprintf("row %d, type suggested from its CPUs and memory", s.Row)
	case s.Row == 0:
		how = "no row: unchanged"
	}
	return fmt.Sprintf("%s: %s (%s)", s.Name, s.InstanceType, how)
}
