package web

import (
	"context"
	"net/http"

	"github.com/rehost/rehost/connector/api"
)

// The wizard walks a new appliance through its setup, one step a page:
// each step is the dashboard's own page for that task, shown with the
// steps above it and a way on to the next.
type wizardStep struct {
	N               int
	Key, Title, URL string
	Done, Current   bool
}

type wizardView struct {
	Steps []wizardStep
	// Next is the step after the current one ("" on the last).
	Next *wizardStep
}

var wizardSteps = []struct{ key, title string }{
	{"aws", "Register with AWS"},
	{"sources", "Add a source"},
	{"catalog", "Import the server catalog"},
	{"job", "Create the first job"},
}

// setupState asks the Service which steps are done.
func (c *Console) setupState(ctx context.Context, current string) (*wizardView, error) {
	reg, err := c.svc.GetRegistration(ctx, &api.GetRegistrationInput{})
	if err != nil {
		return nil, err
	}
	srcs, err := c.svc.ListSources(ctx, &api.ListSourcesInput{})
	if err != nil {
		return nil, err
	}
	servers, err := c.svc.GetServers(ctx, &api.GetServersInput{MaxResults: 1})
	if err != nil {
		return nil, err
	}
	jobs, err := c.svc.GetReplicationJobs(ctx, &api.GetReplicationJobsInput{MaxResults: 1})
	if err != nil {
		return nil, err
	}
	done := map[string]bool{
		"aws": reg.Registered, "sources": len(srcs.Sources) > 0,
		"catalog": servers.ServerCatalogStatus == api.CatalogAvailable, "job": len(jobs.ReplicationJobList) > 0,
	}
	v := &wizardView{}
	for i, s := range wizardSteps {
		v.Steps = append(v.Steps, wizardStep{N: i + 1, Key: s.key, Title: s.title, URL: "/wizard/" + s.key, Done: done[s.key], Current: s.key == current})
	}
	for i := range v.Steps {
		if v.Steps[i].Current && i+1 < len(v.Steps) {
			v.Next = &v.Steps[i+1]
		}
	}
	return v, nil
}

// Complete reports whether every step is done.
func (v *wizardView) Complete() bool {
	for _, s := range v.Steps {
		if !s.Done {
			return false
		}
	}
	return true
}

// wizardNext leads to the first step not done, or to the overview.
func (c *Console) wizardNext(w http.ResponseWriter, r *http.Request, rq *request) error {
	v, err := c.setupState(r.Context(), "")
	if err != nil {
		return err
	}
	for _, s := range v.Steps {
		if !s.Done {
			redirect(w, r, s.URL)
			return nil
		}
	}
	redirect(w, r, "/")
	return nil
}

func (c *Console) wizardStep(w http.ResponseWriter, r *http.Request, rq *request) error {
	step := r.PathValue("step")
	wz, err := c.setupState(r.Context(), step)
	if err != nil {
		return err
	}
	switch step {
	case "aws":
		return c.awsView(w, r, rq, wz, http.StatusOK)
	case "sources":
		return c.sourcesView(w, r, rq, wz, http.StatusOK)
	case "catalog":
		return c.serversView(w, r, rq, wz)
	case "job":
		return c.jobNewView(w, r, rq, wz, http.StatusOK)
	}
	return &api.Error{Type: "NotFound", Message: "there is no setup step " + step, Status: http.StatusNotFound}
}

// inWizard returns the wizard's state when a form was sent from one of
// its steps (its hidden "wizard" field), else nil.
func (c *Console) inWizard(r *http.Request, rq *request, step string) (*wizardView, error) {
	if rq.form == nil || rq.form.Get("wizard") == "" {
		return nil, nil
	}
	return c.setupState(r.Context(), step)
}

// back is where a form of a wizard step (or of its dashboard page) leads.
func back(wz *wizardView, step, page string) string {
	if wz != nil {
		return "/wizard/" + step
	}
	return page
}
