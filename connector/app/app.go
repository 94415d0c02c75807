// Package app is application migration: servers grouped into applications
// (SMS's model), groups launched in order, the CloudFormation template of an
// application, its launches — a test launch beside the cutover — and the
// boot check that tells, without logging in, whether each launched server
// came up.
//
// The division of labour: pkg/store keeps applications and launches (the
// Apps role) and enforces what must hold under concurrent writers;
// pkg/target/aws makes the AWS calls; this package decides — what a launch
// configuration means and whether it is complete, what the template says,
// when a launch is done, how a server's console reads. The API
// (connector/api) maps SMS's shapes onto it.
package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// Error classes every error of the package wraps.
var (
	// ErrInvalid: the application or its configuration cannot be launched
	// as it stands (an empty group, a cycle in the launch order, a subnet
	// of another VPC, …); the message names the item.
	ErrInvalid = errors.New("invalid")
	// ErrNotReady: the application is not in a state that allows it (no
	// AMI yet, nothing launched to terminate, a launch in progress).
	ErrNotReady = errors.New("not ready")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

func notReady(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrNotReady}, args...)...)
}

// Store is what the package needs of the store: the Apps role and the
// catalog and jobs its servers come from.
type Store interface {
	store.Apps
	GetServer(ctx context.Context, serverID string) (store.Server, error)
	ListJobs(ctx context.Context, f store.JobFilter) ([]store.ReplicationJob, error)
}

// Cloud is what the package needs of AWS; *aws.Target satisfies it. Every
// method retries what is worth retrying itself.
type Cloud interface {
	Region() string
	// Images, Subnets and SecurityGroups describe what exists of the ids
	// asked; an unknown id is missing from the answer.
	Images(ctx context.Context, ids []string) (map[string]awstarget.Image, error)
	Subnets(ctx context.Context, ids []string) (map[string]awstarget.Subnet, error)
	SecurityGroups(ctx context.Context, ids []string) (map[string]awstarget.SecurityGroup, error)
	// UnknownInstanceTypes returns the types the region does not offer.
	UnknownInstanceTypes(ctx context.Context, types []string) ([]string, error)
	// ValidateTemplate returns CloudFormation's verdict on a template.
	ValidateTemplate(ctx context.Context, body string) error
	// CreateStack is idempotent by in.Token.
	CreateStack(ctx context.Context, in awstarget.StackInput) (string, error)
	// UpdateStack returns aws.ErrNoUpdates when nothing would change.
	UpdateStack(ctx context.Context, in awstarget.StackInput) error
	// DeleteStack succeeds for a stack that does not exist.
	DeleteStack(ctx context.Context, name, token string) error
	// DescribeStack returns nil for a stack that does not exist.
	DescribeStack(ctx context.Context, name string) (*awstarget.Stack, error)
	StackEvents(ctx context.Context, name string) ([]awstarget.StackEvent, error)
	StackResources(ctx context.Context, name string) ([]awstarget.StackResource, error)
	CreateChangeSet(ctx context.Context, in awstarget.StackInput, name string) (awstarget.ChangeSet, error)
	// InstanceStatuses and ConsoleOutput read a launched instance.
	InstanceStatuses(ctx context.Context, ids []string) (map[string]awstarget.InstanceStatus, error)
	ConsoleOutput(ctx context.Context, id string) (string, error)
	// SignalWaitCondition PUTs a signal to a wait condition handle URL;
	// repeating one is harmless.
	SignalWaitCondition(ctx context.Context, url string, body []byte) error
	// RunCommand starts a validation command through SSM Run Command
	// (aws.ErrNoAgent when SSM does not manage the instance);
	// CommandResult reads how it went.
	RunCommand(ctx context.Context, instanceID string, windows bool, command string) (string, error)
	CommandResult(ctx context.Context, commandID, instanceID string) (awstarget.CommandResult, error)
	// PutObject stores an object in the staging bucket; GetObject reads a
	// small object of at most limit bytes.
	PutObject(ctx context.Context, key string, body []byte, contentType string) (bucket string, err error)
	GetObject(ctx context.Context, bucket, key string, limit int64) ([]byte, error)
}

var _ Cloud = (*awstarget.Target)(nil)

// groupName names a group in messages: its name, else its id.
func groupName(g store.ServerGroup) string { return cmp.Or(g.Name, g.GroupID) }

// CheckGroups checks an application's server groups: each has servers.
// (A server in two groups, or in two apps, the store refuses.)
func CheckGroups(a store.App) error {
	for _, g := range a.Groups {
		if len(g.ServerIDs) == 0 {
			return invalid("server group %q of app %q has no servers: add servers to it or remove it", groupName(g), a.Name)
		}
	}
	return nil
}

var logicalRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9]{0,254}$`)

// logicalID makes a CloudFormation logical id of a name: its letters and
// digits, each word capitalised ("web-01" → "Web01").
func logicalID(name string) string {
	var b strings.Builder
	up := true
	for _, r := range name {
		if r > unicode.MaxASCII || !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			up = true
			continue
		}
		if up {
			r = unicode.ToUpper(r)
			up = false
		}
		b.WriteRune(r)
	}
	s := b.String()
	if s == "" || !unicode.IsLetter(rune(s[0])) {
		s = "Server" + s
	}
	return s
}

// CheckLaunchConfig checks that the launch configuration covers the app's
// groups and servers exactly, each server under its own group, with logical
// ids that are unique and valid, and that the launch order has no cycle.
// names gives each server's display name for the messages.
func CheckLaunchConfig(a store.App, names map[string]string) error {
	if a.Launch == nil {
		return invalid("app %q has no launch configuration: put one (PutAppLaunchConfiguration, 'rehost app configure') or import a rightsizing CSV", a.Name)
	}
	if err := checkEntries(a, a.Launch, names, true); err != nil {
		return err
	}
	_, err := LaunchOrder(a)
	return err
}

// Configure checks a launch configuration given for the app (what it
// names must be the app's, each server under its own group) and completes
// it: a group or server left out gets defaults (launch order by position,
// the default subnet), and a server without an instance type gets one
// suggested from its CPUs and memory. servers holds the app's servers.
func Configure(a store.App, in *store.LaunchConfig, servers map[string]store.Server) (*store.LaunchConfig, error) {
	names := map[string]string{}
	for id, s := range servers {
		names[id] = s.Name
	}
	if err := checkEntries(a, in, names, false); err != nil {
		return nil, err
	}
	a.Launch = in
	lc := DefaultLaunchConfig(a)
	if err := suggestTypes(lc, servers, nil); err != nil {
		return nil, err
	}
	a.Launch = lc
	if err := CheckLaunchConfig(a, names); err != nil {
		return nil, err
	}
	return lc, nil
}

// checkEntries checks what a launch configuration names; complete also
// asks that it covers every group and server.
func checkEntries(a store.App, lc *store.LaunchConfig, names map[string]string, complete bool) error {
	groupOf := map[string]string{}
	byID := map[string]store.ServerGroup{}
	for _, g := range a.Groups {
		byID[g.GroupID] = g
		for _, s := range g.ServerIDs {
			groupOf[s] = g.GroupID
		}
	}
	name := func(id string) string { return cmp.Or(names[id], id) }
	seenGroup := map[string]bool{}
	seenServer := map[string]bool{}
	seenLogical := map[string]string{}
	for _, gl := range lc.Groups {
		g, ok := byID[gl.GroupID]
		if !ok {
			return invalid("the launch configuration of app %q names server group %s, which the app does not have", a.Name, gl.GroupID)
		}
		if seenGroup[gl.GroupID] {
			return invalid("the launch configuration of app %q lists server group %q twice", a.Name, groupName(g))
		}
		seenGroup[gl.GroupID] = true
		if gl.LaunchOrder < 0 {
			return invalid("server group %q of app %q: launch order %d is negative", groupName(g), a.Name, gl.LaunchOrder)
		}
		for _, after := range gl.After {
			if _, ok := byID[after]; !ok {
				return invalid("server group %q of app %q waits for server group %s, which the app does not have", groupName(g), a.Name, after)
			}
		}
		for _, sl := range gl.Servers {
			switch {
			case groupOf[sl.ServerID] == "":
				return invalid("the launch configuration of app %q names server %s, which is in none of its groups", a.Name, name(sl.ServerID))
			case groupOf[sl.ServerID] != gl.GroupID:
				return invalid("server %s is configured under server group %q but belongs to %q", name(sl.ServerID), groupName(g), groupName(byID[groupOf[sl.ServerID]]))
			case seenServer[sl.ServerID]:
				return invalid("server %s is configured twice in app %q", name(sl.ServerID), a.Name)
			}
			seenServer[sl.ServerID] = true
			lid := cmp.Or(sl.LogicalID, logicalID(names[sl.ServerID]))
			if !logicalRE.MatchString(lid) {
				return invalid("server %s: logical id %q must be letters and digits, starting with a letter", name(sl.ServerID), lid)
			}
			if other, dup := seenLogical[lid]; dup {
				return invalid("servers %s and %s share the logical id %q: give one of them another", name(other), name(sl.ServerID), lid)
			}
			seenLogical[lid] = sl.ServerID
			if complete && sl.InstanceType == "" {
				return invalid("server %s has no instance type: give one, or import a rightsizing CSV", name(sl.ServerID))
			}
			switch sl.ConfigureScriptType {
			case "", ScriptShell, ScriptPowerShell:
			default:
				return invalid("server %s: configure script type %q is not SHELL_SCRIPT or POWERSHELL_SCRIPT", name(sl.ServerID), sl.ConfigureScriptType)
			}
			if sl.ConfigureScript != nil && sl.ConfigureScriptType == "" {
				return invalid("server %s: a configure script needs its type (SHELL_SCRIPT or POWERSHELL_SCRIPT)", name(sl.ServerID))
			}
		}
	}
	if !complete {
		return nil
	}
	for _, g := range a.Groups {
		if !seenGroup[g.GroupID] {
			return invalid("server group %q of app %q has no launch configuration: give it a launch order and its servers' settings", groupName(g), a.Name)
		}
		for _, s := range g.ServerIDs {
			if !seenServer[s] {
				return invalid("server %s of group %q has no launch configuration", name(s), groupName(g))
			}
		}
	}
	return nil
}

// Script types of a configure script, as SMS names them.
const (
	ScriptShell      = "SHELL_SCRIPT"
	ScriptPowerShell = "POWERSHELL_SCRIPT"
)

// LaunchOrder returns, for each group, the groups that must have signalled
// readiness before it starts: those of the next lower launch order (the
// lower ones are reached through them) and those it is told to wait for.
// A cycle is an error naming the groups on it.
func LaunchOrder(a store.App) (map[string][]string, error) {
	lc := a.Launch
	waits := map[string][]string{}
	orders := map[int][]string{}
	for _, gl := range lc.Groups {
		orders[gl.LaunchOrder] = append(orders[gl.LaunchOrder], gl.GroupID)
	}
	levels := slices.Sorted(maps.Keys(orders))
	for _, gl := range lc.Groups {
		var w []string
		if i := slices.Index(levels, gl.LaunchOrder); i > 0 {
			w = append(w, orders[levels[i-1]]...)
		}
		w = append(w, gl.After...)
		slices.Sort(w)
		waits[gl.GroupID] = slices.Compact(w)
	}
	names := map[string]string{}
	for _, g := range a.Groups {
		names[g.GroupID] = groupName(g)
	}
	// Depth-first search for a cycle.
	state := map[string]int{}
	var path []string
	var visit func(string) []string
	visit = func(g string) []string {
		state[g] = 1
		path = append(path, g)
		for _, d := range waits[g] {
			switch state[d] {
			case 1:
				return append(slices.Clone(path[slices.Index(path, d):]), d)
			case 0:
				if c := visit(d); c != nil {
					return c
				}
			}
		}
		path = path[:len(path)-1]
		state[g] = 2
		return nil
	}
	for _, gl := range lc.Groups {
		if state[gl.GroupID] == 0 {
			if c := visit(gl.GroupID); c != nil {
				var parts []string
				for _, g := range c {
					parts = append(parts, fmt.Sprintf("%q", names[g]))
				}
				return nil, invalid("the launch order of app %q has a cycle: server groups %s each wait for the next", a.Name, strings.Join(parts, " → "))
			}
		}
	}
	return waits, nil
}

// orderedGroups lists the launch configuration's groups by launch order,
// then as the app lists them.
func orderedGroups(a store.App) []store.GroupLaunch {
	pos := map[string]int{}
	for i, g := range a.Groups {
		pos[g.GroupID] = i
	}
	gs := slices.Clone(a.Launch.Groups)
	slices.SortStableFunc(gs, func(x, y store.GroupLaunch) int {
		return cmp.Or(cmp.Compare(x.LaunchOrder, y.LaunchOrder), cmp.Compare(pos[x.GroupID], pos[y.GroupID]))
	})
	return gs
}
