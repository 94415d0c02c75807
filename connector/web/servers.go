package web

import (
	"context"
	"fmt"
	"net/http"
	"strings"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/limit"
)

type serversView struct {
	Servers []api.Server
	// Total is the catalog's size before filtering.
	Total   int
	Status  string
	Updated api.Time
	Sources []api.Source
	Filter  *form
}

// allServers reads the whole catalog, page by page.
func (c *Console) allServers(ctx context.Context) (*api.GetServersOutput, []api.Server, error) {
	in := &api.GetServersInput{MaxResults: 1000}
	var all []api.Server
	for {
		out, err := c.svc.GetServers(ctx, in)
		if err != nil {
			return nil, nil, err
		}
		all = append(all, out.ServerList...)
		if in.NextToken = out.NextToken; in.NextToken == "" {
			return out, all, nil
		}
	}
}

func (c *Console) serversPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	return c.serversView(w, r, rq, nil)
}

func (c *Console) serversView(w http.ResponseWriter, r *http.Request, rq *request, wz *wizardView) error {
	out, all, err := c.allServers(r.Context())
	if err != nil {
		return err
	}
	srcs, err := c.svc.ListSources(r.Context(), &api.ListSourcesInput{})
	if err != nil {
		return err
	}
	filter := newForm(r.URL.Query())
	q, src, jobs, pf := strings.ToLower(filter.Get("q")), filter.Get("source"), filter.Get("jobs"), filter.Get("preflight")
	if err := limit.Search.Check(q); err != nil {
		filter.fail("q", err.Error())
		q = ""
	}
	d := serversView{Total: len(all), Status: out.ServerCatalogStatus, Updated: out.LastModifiedOn, Sources: srcs.Sources, Filter: filter}
	for _, s := range all {
		vm := vmOf(s.VmServer)
		hasJob := s.ReplicationJobID != "" && !s.ReplicationJobTerminated
		switch {
		case src != "" && vm.VmServerAddress != nil && vm.VmServerAddress.VmManagerID != src:
		case jobs == "with" && !hasJob, jobs == "without" && hasJob:
		case pf != "" && preflightStatus(s) != pf:
		case q != "" && !strings.Contains(strings.ToLower(strings.Join([]string{vm.VmName, vm.VmPath, s.ServerID, guestOS(s)}, " ")), q):
		default:
			d.Servers = append(d.Servers, s)
		}
	}
	v := &view{Title: "Servers", Nav: "servers", Wizard: wz}
	return c.render(w, r, rq, http.StatusOK, v, serversPage(v, d))
}

func guestOS(s api.Server) string {
	if s.Rehost == nil {
		return ""
	}
	return s.Rehost.GuestOS
}

func (c *Console) serversImport(w http.ResponseWriter, r *http.Request, rq *request) error {
	wz := rq.form.Get("wizard") != ""
	to := "/servers"
	if wz {
		to = "/wizard/catalog"
	}
	out, err := c.svc.ImportServerCatalog(r.Context(), &api.ImportServerCatalogInput{})
	if err != nil {
		var ae *api.Error
		if asAPIError(err, &ae) {
			return c.flashTo(w, r, rq, to, flash{Kind: "error", Target: "import", Message: "Import failed: " + ae.Message})
		}
		return err
	}
	c.log.Info("console: server catalog imported", "servers", len(out.RehostServers))
	return c.flashTo(w, r, rq, to, flash{Kind: "ok", Target: "import", Message: fmt.Sprintf("Imported %d servers.", len(out.RehostServers))})
}
