package web

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/app"
	"github.com/rehost/rehost/pkg/store"
)

// The applications' pages: the list with each app's rolled-up status, an
// app's page (its groups in launch order and how each server launches, the
// rightsizing upload, the template, the launches with each server's boot
// check), and the forms that create, launch, terminate and delete.

type appsView struct {
	Apps    []api.AppSummary
	Servers []api.Server
}

// allApps reads every application, page by page.
func (c *Console) allApps(ctx context.Context) ([]api.AppSummary, error) {
	in := &api.ListAppsInput{MaxResults: 1000}
	var all []api.AppSummary
	for {
		out, err := c.svc.ListApps(ctx, in)
		if err != nil {
			return nil, err
		}
		all = append(all, out.Apps...)
		if in.NextToken = out.NextToken; in.NextToken == "" {
			return all, nil
		}
	}
}

func (c *Console) appsPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	return c.appsView(w, r, rq, http.StatusOK)
}

func (c *Console) appsView(w http.ResponseWriter, r *http.Request, rq *request, status int) error {
	apps, err := c.allApps(r.Context())
	if err != nil {
		return err
	}
	_, servers, err := c.allServers(r.Context())
	if err != nil {
		return err
	}
	v := &view{Title: "Applications", Nav: "apps"}
	return c.render(w, r, rq, status, v, appsPage(v, appsView{Apps: apps, Servers: servers}))
}

// parseGroups reads the create form's groups: one a line, in launch order,
// "NAME: SERVER, SERVER…", each server by VM name or server id.
func parseGroups(text string, servers []api.Server) ([]api.ServerGroup, error) {
	byRef := map[string]string{}
	for _, s := range servers {
		byRef[s.ServerID] = s.ServerID
		if n := vmOf(s.VmServer).VmName; n != "" {
			if _, dup := byRef[n]; !dup {
				byRef[n] = s.ServerID
			}
		}
	}
	var out []api.ServerGroup
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, list, ok := strings.Cut(line, ":")
		if !ok || strings.TrimSpace(name) == "" {
			return nil, fmt.Errorf("line %d, %q: want NAME: SERVER, SERVER…", i+1, line)
		}
		g := api.ServerGroup{Name: strings.TrimSpace(name), ServerList: []api.Server{}}
		for _, ref := range strings.Split(list, ",") {
			if ref = strings.TrimSpace(ref); ref == "" {
				continue
			}
			id, ok := byRef[ref]
			if !ok {
				return nil, fmt.Errorf("line %d: no server %q in the catalog: give a VM name or server id from the Servers page", i+1, ref)
			}
			g.ServerList = append(g.ServerList, api.Server{ServerID: id})
		}
		out = append(out, g)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("give at least one group: NAME: SERVER, SERVER…")
	}
	return out, nil
}

func (c *Console) appCreate(w http.ResponseWriter, r *http.Request, rq *request) error {
	f := rq.form
	f.require("name", "groups")
	if !f.ok() {
		return c.appsView(w, r, rq, http.StatusUnprocessableEntity)
	}
	_, servers, err := c.allServers(r.Context())
	if err != nil {
		return err
	}
	groups, err := parseGroups(f.Values.Get("groups"), servers)
	if err != nil {
		f.fail("groups", err.Error())
		return c.appsView(w, r, rq, http.StatusUnprocessableEntity)
	}
	out, err := c.svc.CreateApp(r.Context(), &api.CreateAppInput{Name: f.Get("name"), Description: f.Get("description"), ServerGroups: groups})
	if err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		f.apiError(err, map[string]string{"name": "name", "description": "description", "group": "groups", "server": "groups"})
		return c.appsView(w, r, rq, http.StatusUnprocessableEntity)
	}
	a := out.AppSummary
	c.log.Info("console: app created", "appId", a.AppID, "name", a.Name)
	return c.flashTo(w, r, rq, string(appURL(a.AppID)), flash{Kind: "ok",
		Message: fmt.Sprintf("Created the application %s: %d servers in %d groups.", a.Name, a.TotalServers, a.TotalServerGroups)})
}

// appView is an application's page.
type appView struct {
	App *api.AppOutput
	// Groups are the app's groups in launch order, each server with how
	// it launches (nil before a launch configuration).
	Groups     []launchGroup
	Configured bool
	Test       *api.TestLaunch
	// Template is the template just generated, shown on the page.
	Template *api.GenerateTemplateOutput
	// Live: a launch is still moving, so the launches refresh themselves.
	Live bool
}

type launchGroup struct {
	Order   int
	Name    string
	ID      string
	After   []string
	Servers []launchServer
}

type launchServer struct {
	Server api.Server
	Config *api.ServerLaunchConfiguration
}

func (c *Console) loadApp(ctx context.Context, id string) (*appView, error) {
	out, err := c.svc.GetApp(ctx, &api.GetAppInput{AppID: id})
	if err != nil {
		var ae *api.Error
		if asAPIError(err, &ae) && ae.Type == api.ErrInvalidParameter {
			ae.Status = http.StatusNotFound
		}
		return nil, err
	}
	lc, err := c.svc.GetAppLaunchConfiguration(ctx, &api.GetAppLaunchConfigurationInput{AppID: id})
	if err != nil {
		return nil, err
	}
	d := &appView{App: out, Configured: len(lc.ServerGroupLaunchConfigurations) > 0, Test: lc.RehostTestLaunch}
	d.Groups = launchOrder(out.ServerGroups, lc.ServerGroupLaunchConfigurations)
	d.Live = slices.ContainsFunc(out.RehostLaunches, moving)
	return d, nil
}

// launchOrder lists the app's groups in launch order (the app's own order
// without a launch configuration), each server with its configuration.
func launchOrder(groups []api.ServerGroup, lcs []api.ServerGroupLaunchConfiguration) []launchGroup {
	byGroup := map[string]api.ServerGroupLaunchConfiguration{}
	for _, g := range lcs {
		byGroup[g.ServerGroupID] = g
	}
	names := map[string]string{}
	for _, g := range groups {
		names[g.ServerGroupID] = g.Name
	}
	var out []launchGroup
	for i, g := range groups {
		lg := launchGroup{Order: i + 1, Name: g.Name, ID: g.ServerGroupID}
		cfg, ok := byGroup[g.ServerGroupID]
		if ok && cfg.LaunchOrder != nil {
			lg.Order = *cfg.LaunchOrder
		}
		for _, a := range cfg.RehostAfter {
			lg.After = append(lg.After, cmp.Or(names[a], a))
		}
		for _, s := range g.ServerList {
			ls := launchServer{Server: s}
			for j := range cfg.ServerLaunchConfigurations {
				if sl := &cfg.ServerLaunchConfigurations[j]; sl.Server != nil && sl.Server.ServerID == s.ServerID {
					ls.Config = sl
				}
			}
			lg.Servers = append(lg.Servers, ls)
		}
		out = append(out, lg)
	}
	slices.SortStableFunc(out, func(a, b launchGroup) int { return a.Order - b.Order })
	return out
}

// moving reports whether a launch changes by itself: its stack, or a boot
// check still under way.
func moving(l api.AppLaunch) bool {
	if store.LaunchState(l.State).InProgress() {
		return true
	}
	return l.State == string(store.LaunchLaunched) && slices.ContainsFunc(l.Servers, func(s api.LaunchedServer) bool {
		return s.Boot == "" || s.Boot == app.Booting
	})
}

func (c *Console) appPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	return c.appViewPage(w, r, rq, http.StatusOK, nil)
}

func (c *Console) appViewPage(w http.ResponseWriter, r *http.Request, rq *request, status int, tpl *api.GenerateTemplateOutput) error {
	d, err := c.loadApp(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	d.Template = tpl
	v := &view{Title: "Application " + d.App.AppSummary.Name, Nav: "apps", Refresh: refreshIf(d.Live)}
	return c.render(w, r, rq, status, v, appPage(v, d))
}

// appLive is an app's launches, which its page's script fetches while one
// is moving.
func (c *Console) appLive(w http.ResponseWriter, r *http.Request, rq *request) error {
	d, err := c.loadApp(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return c.send(w, r, http.StatusOK, appLaunches(d))
}

// maxCSV bounds a rightsizing CSV (the form's whole size bounds it too).
const maxCSV = 200 << 10

// uploaded reads a form's file (empty when none was chosen), else the
// text field of the same purpose.
func uploaded(r *http.Request, rq *request, file, text string) (string, error) {
	if r.MultipartForm != nil {
		if fhs := r.MultipartForm.File[file]; len(fhs) > 0 && fhs[0].Size > 0 {
			fh := fhs[0]
			if fh.Size > maxCSV {
				return "", fmt.Errorf("%s: %d bytes, want at most %d", fh.Filename, fh.Size, maxCSV)
			}
			f, err := fh.Open()
			if err != nil {
				return "", fmt.Errorf("read %s: %w", fh.Filename, err)
			}
			defer f.Close()
			b, err := io.ReadAll(io.LimitReader(f, maxCSV+1))
			if err != nil {
				return "", fmt.Errorf("read %s: %w", fh.Filename, err)
			}
			return string(b), nil
		}
	}
	return rq.form.Values.Get(text), nil
}

func (c *Console) appRightsize(w http.ResponseWriter, r *http.Request, rq *request) error {
	id := r.PathValue("id")
	f := rq.form
	csv, err := uploaded(r, rq, "csv_file", "csv")
	if err != nil {
		f.fail("csv_file", err.Error())
		return c.appViewPage(w, r, rq, http.StatusUnprocessableEntity, nil)
	}
	if strings.TrimSpace(csv) == "" {
		f.fail("csv_file", "choose a CSV file (or paste its text below)")
		return c.appViewPage(w, r, rq, http.StatusUnprocessableEntity, nil)
	}
	out, err := c.svc.ImportAppRightsizing(r.Context(), &api.ImportAppRightsizingInput{AppID: id, CSV: csv})
	if err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		// The API names the row, the column and the value; nothing was
		// applied.
		f.fail("csv_file", ae.Message+" — nothing was changed")
		return c.appViewPage(w, r, rq, http.StatusUnprocessableEntity, nil)
	}
	var parts []string
	for _, s := range out.Servers {
		p := s.Name + " " + s.InstanceType
		switch {
		case s.Suggested:
			p += " (suggested from its CPUs and memory)"
		case s.Row > 0:
			p += fmt.Sprintf(" (row %d)", s.Row)
		}
		parts = append(parts, p)
	}
	c.log.Info("console: rightsizing imported", "appId", id, "servers", len(out.Servers))
	return c.flashTo(w, r, rq, string(appURL(id)), flash{Kind: "ok", Target: "rightsizing",
		Message: "Imported the rightsizing CSV: " + strings.Join(parts, "; ") + "."})
}

func (c *Console) appTemplate(w http.ResponseWriter, r *http.Request, rq *request) error {
	id := r.PathValue("id")
	f := rq.form
	format := cmp.Or(f.Get("format"), "JSON")
	out, err := c.svc.GenerateTemplate(r.Context(), &api.GenerateTemplateInput{AppID: id, TemplateFormat: format})
	if err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		f.fail("format", ae.Message)
		return c.appViewPage(w, r, rq, http.StatusUnprocessableEntity, nil)
	}
	if f.Get("do") == "download" {
		ext := "json"
		if strings.EqualFold(format, "YAML") {
			ext = "yaml"
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.template.%s"`, id, ext))
		w.Header().Set("Cache-Control", "no-store")
		_, err := io.WriteString(w, out.RehostTemplateBody)
		return err
	}
	return c.appViewPage(w, r, rq, http.StatusOK, out)
}

func (c *Console) appLaunch(w http.ResponseWriter, r *http.Request, rq *request) error {
	id := r.PathValue("id")
	test := rq.form.Get("kind") == "test"
	if _, err := c.svc.LaunchApp(r.Context(), &api.LaunchAppInput{AppID: id, RehostTest: test}); err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		return c.flashTo(w, r, rq, string(appURL(id)), flash{Kind: "error", Target: "launches", Message: "The launch was refused: " + ae.Message})
	}
	c.log.Info("console: app launched", "appId", id, "test", test)
	return c.flashTo(w, r, rq, string(appURL(id))+"#launches-h", flash{Kind: "ok", Target: "launches",
		Message: "Launching the " + launchKind(test) + ": CloudFormation creates the stack; each server's boot check follows below."})
}

func launchKind(test bool) string {
	if test {
		return "test launch"
	}
	return "cutover"
}

func (c *Console) appTerminatePage(w http.ResponseWriter, r *http.Request, rq *request) error {
	d, err := c.loadApp(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	test := r.URL.Query().Get("kind") == "test"
	v := &view{Title: "Terminate the " + launchKind(test), Nav: "apps"}
	return c.render(w, r, rq, http.StatusOK, v, appTerminatePage(v, d, test))
}

func (c *Console) appTerminate(w http.ResponseWriter, r *http.Request, rq *request) error {
	id := r.PathValue("id")
	test := rq.form.Get("kind") == "test"
	if _, err := c.svc.TerminateApp(r.Context(), &api.TerminateAppInput{AppID: id, RehostTest: test}); err != nil {
		return err
	}
	c.log.Info("console: app terminated", "appId", id, "test", test)
	return c.flashTo(w, r, rq, string(appURL(id))+"#launches-h", flash{Kind: "ok", Target: "launches",
		Message: "Terminating the " + launchKind(test) + ": its stack and instances are deleted; the other launch is left as it is."})
}

func (c *Console) appReplicate(w http.ResponseWriter, r *http.Request, rq *request) error {
	id := r.PathValue("id")
	out, err := c.svc.StartOnDemandAppReplication(r.Context(), &api.StartOnDemandAppReplicationInput{AppID: id, Description: "from the console"})
	if err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		return c.flashTo(w, r, rq, string(appURL(id)), flash{Kind: "error", Message: "Replication was not started: " + ae.Message})
	}
	return c.flashTo(w, r, rq, string(appURL(id)), flash{Kind: "ok", Message: fmt.Sprintf("Started %d replication runs, one for each server.", len(out.RehostReplicationRunIDs))})
}

func (c *Console) appDeletePage(w http.ResponseWriter, r *http.Request, rq *request) error {
	d, err := c.loadApp(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	v := &view{Title: "Delete application " + d.App.AppSummary.Name, Nav: "apps"}
	return c.render(w, r, rq, http.StatusOK, v, appDeletePage(v, d))
}

func (c *Console) appDelete(w http.ResponseWriter, r *http.Request, rq *request) error {
	d, err := c.loadApp(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	a := d.App.AppSummary
	if _, err := c.svc.DeleteApp(r.Context(), &api.DeleteAppInput{AppID: a.AppID, ForceTerminateApp: rq.form.On("terminate"),
		ForceStopAppReplication: rq.form.On("stop_replication")}); err != nil {
		return err
	}
	c.log.Info("console: app deleted", "appId", a.AppID)
	return c.flashTo(w, r, rq, "/apps", flash{Kind: "ok", Message: "Deleted the application " + a.Name + "."})
}

// liveLaunches are the launches the page shows: every one not terminated,
// and the latest of each kind whatever its state.
func liveLaunches(ls []api.AppLaunch) []api.AppLaunch {
	var out []api.AppLaunch
	seen := map[string]bool{}
	for _, l := range ls {
		if l.State != "TERMINATED" || !seen[l.Kind] {
			out = append(out, l)
		}
		seen[l.Kind] = true
	}
	return out
}

// launchedHas reports whether the app has a launch of the kind that is not
// terminated (so it may be terminated).
func launchedHas(ls []api.AppLaunch, kind string) bool {
	return slices.ContainsFunc(ls, func(l api.AppLaunch) bool { return l.Kind == kind && l.State != "TERMINATED" })
}

func serverName(s api.Server) string { return cmp.Or(vmOf(s.VmServer).VmName, s.ServerID) }

func tagsText(ts []api.Tag) string {
	var parts []string
	for _, t := range ts {
		parts = append(parts, t.Key+"="+t.Value)
	}
	return strings.Join(parts, ", ")
}

func publicIPText(b *bool) string {
	switch {
	case b == nil:
		return "subnet's default"
	case *b:
		return "yes"
	}
	return "no"
}

// validationText is a validation command's outcome in words.
func validationText(v *api.Validation) string {
	if v == nil {
		return "—"
	}
	if v.Status == "passed" || v.Status == "failed" {
		return fmt.Sprintf("%s (exit %d)", v.Status, v.ExitCode)
	}
	return cmp.Or(v.Status, "waiting")
}
