package api

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/rehost/rehost/pkg/preflight"
	"github.com/rehost/rehost/pkg/store"
)

// admit checks a server again before a job is created for it: a blocked
// server is refused, naming its blockers; one with warnings only when the
// caller accepts them.
func (l *Local) admit(ctx context.Context, srv store.Server, acceptWarnings bool) error {
	rs, err := l.D.PreflightServers(ctx, srv.ServerID)
	if err != nil {
		return internal(err)
	}
	r, ok := rs[srv.ServerID]
	if !ok {
		return nil
	}
	see := fmt.Sprintf("see 'rehost preflight --server %s'", srv.Name)
	switch r.Status {
	case preflight.Blocked:
		return Errorf(ErrServerCannotBeReplicated, "server %s (%q) cannot be replicated: %s (%s)", srv.ServerID, srv.Name,
			listFindings(preflight.Of(r.Findings, preflight.Blocker)), see)
	case preflight.ReadyWithWarnings:
		if !acceptWarnings {
			return Errorf(ErrServerCannotBeReplicated, "server %s (%q) has preflight warnings: %s; accept them with rehostAcceptWarnings ('rehost job create --accept-warnings') (%s)",
				srv.ServerID, srv.Name, listFindings(preflight.Of(r.Findings, preflight.Warning)), see)
		}
	}
	return nil
}

func listFindings(fs []preflight.Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Code+": "+strings.TrimSuffix(f.Message, "."))
	}
	return strings.Join(out, "; ")
}

// Preflight checks the servers named (ids or names; all when none is) and
// the account now.
func (l *Local) Preflight(ctx context.Context, in *PreflightInput) (*PreflightOutput, error) {
	c, err := l.catalog(ctx)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, want := range in.Servers {
		var match []string
		for id, s := range c.servers {
			if id == want || s.Name == want {
				match = append(match, id)
			}
		}
		switch len(match) {
		case 0:
			return nil, Errorf(ErrInvalidParameter, "no server %q in the catalog: see 'rehost server list'", want)
		case 1:
			ids = append(ids, match[0])
		default:
			return nil, Errorf(ErrInvalidParameter, "%d servers are named %q: give the server id (see 'rehost server list')", len(match), want)
		}
	}
	out := &PreflightOutput{Servers: []ServerPreflight{}}
	if in.SkipAccount {
		if r, ok, err := l.D.Preflight(ctx, store.PreflightAccount); err != nil {
			return nil, internal(err)
		} else if ok {
			out.Account = preflightOf(r)
		}
	} else if _, err := l.D.Target(ctx); err == nil {
		r, err := l.D.PreflightAccount(ctx)
		if err != nil {
			return nil, internal(err)
		}
		out.Account = preflightOf(r)
	}
	if len(c.servers) > 0 {
		rs, err := l.D.PreflightServers(ctx, ids...)
		if err != nil {
			return nil, internal(err)
		}
		for id, r := range rs {
			out.Servers = append(out.Servers, ServerPreflight{ServerID: id, Name: c.servers[id].Name, Preflight: *preflightOf(r)})
		}
	}
	slices.SortFunc(out.Servers, func(a, b ServerPreflight) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ServerID, b.ServerID))
	})
	return out, nil
}
