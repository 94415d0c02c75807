package web

import (
	"cmp"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/store"
)

type overviewView struct {
	Setup     *wizardView
	Reg       *api.Registration
	Sources   int
	Servers   int
	Jobs      []api.ReplicationJob
	Attention []api.ReplicationJob
	// LiveRuns are the runs in progress or waiting.
	LiveRuns []liveRun
	Events   []api.Event
	// Bandwidth is the cap in force and the live throughput.
	Bandwidth *api.BandwidthCap
}

// liveRun is a run in progress or waiting, with its job's server.
type liveRun struct {
	Run    api.ReplicationRun
	Server string
}

// liveRuns are the latest runs of the jobs that are in progress or
// waiting.
func liveRuns(jobs []api.ReplicationJob) []liveRun {
	var out []liveRun
	for _, j := range jobs {
		if len(j.ReplicationRunList) > 0 && store.RunState(j.ReplicationRunList[0].State).Live() {
			out = append(out, liveRun{Run: j.ReplicationRunList[0], Server: cmp.Or(vmOf(j.VmServer).VmName, j.ServerID)})
		}
	}
	return out
}

func (c *Console) overview(w http.ResponseWriter, r *http.Request, rq *request) error {
	ctx := r.Context()
	setup, err := c.setupState(ctx, "")
	if err != nil {
		return err
	}
	d := overviewView{Setup: setup}
	if d.Reg, err = c.svc.GetRegistration(ctx, &api.GetRegistrationInput{}); err != nil {
		return err
	}
	srcs, err := c.svc.ListSources(ctx, &api.ListSourcesInput{})
	if err != nil {
		return err
	}
	d.Sources = len(srcs.Sources)
	_, servers, err := c.allServers(ctx)
	if err != nil {
		return err
	}
	d.Servers = len(servers)
	jobs, err := c.allJobs(ctx)
	if err != nil {
		return err
	}
	d.Jobs = liveJobs(jobs)
	for _, j := range d.Jobs {
		switch store.JobState(j.State) {
		case store.JobFailing, store.JobFailed, store.JobPausedOnFailure:
			d.Attention = append(d.Attention, j)
		}
	}
	d.LiveRuns = liveRuns(d.Jobs)
	if d.Bandwidth, err = c.svc.GetBandwidthCap(ctx, &api.GetBandwidthCapInput{}); err != nil {
		return err
	}
	evs, err := c.svc.GetEvents(ctx, &api.GetEventsInput{MaxResults: 10})
	if err != nil {
		return err
	}
	d.Events = evs.Events
	// Without JavaScript the overview reloads itself, so that a run that
	// starts shows up: often while runs go on, now and then otherwise.
	refresh := 30
	if len(d.LiveRuns) > 0 {
		refresh = 5
	}
	return c.render(w, r, rq, http.StatusOK, &view{Title: "Overview", Nav: "overview", Refresh: refresh}, overviewPage(d))
}

// overviewLive is the overview's list of runs in progress, which its
// script fetches every few seconds: a run that starts while the page is
// open shows up, one that ends goes.
func (c *Console) overviewLive(w http.ResponseWriter, r *http.Request, rq *request) error {
	jobs, err := c.allJobs(r.Context())
	if err != nil {
		return err
	}
	bw, err := c.svc.GetBandwidthCap(r.Context(), &api.GetBandwidthCapInput{})
	if err != nil {
		return err
	}
	return c.send(w, r, http.StatusOK, liveOverview(liveRuns(liveJobs(jobs)), bw))
}

type healthView struct {
	S        *api.ConnectorStatus
	DiskUsed int
	LowDisk  bool
	Uptime   string
}

func (c *Console) healthPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	st, err := c.svc.GetConnectorStatus(r.Context(), &api.GetConnectorStatusInput{})
	if err != nil {
		return err
	}
	d := healthView{S: st, Uptime: duration(time.Duration(st.UptimeSeconds) * time.Second)}
	if st.TotalDiskBytes > 0 {
		d.DiskUsed = int(100 - st.FreeDiskBytes*100/st.TotalDiskBytes)
	}
	d.LowDisk = st.FreeDiskBytes < 1<<30
	v := &view{Title: "Connector health", Nav: "health"}
	return c.render(w, r, rq, http.StatusOK, v, healthPage(v, d))
}

type keysView struct {
	Keys []daemon.AccessKey
	// New is the key just created: its secret is shown this once.
	New *daemon.AccessKey
}

func (c *Console) keysPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	return c.keysView(w, r, rq, http.StatusOK, nil)
}

func (c *Console) keysView(w http.ResponseWriter, r *http.Request, rq *request, status int, created *daemon.AccessKey) error {
	keys, err := c.o.Keys.AccessKeys(r.Context())
	if err != nil {
		return err
	}
	slices.SortFunc(keys, func(a, b daemon.AccessKey) int { return b.CreatedAt.Compare(a.CreatedAt) })
	v := &view{Title: "API access keys", Nav: "keys"}
	return c.render(w, r, rq, status, v, keysPage(v, keysView{Keys: keys, New: created}))
}

// maxKeyName bounds a key's name.
const maxKeyName = 128

func (c *Console) keyCreate(w http.ResponseWriter, r *http.Request, rq *request) error {
	f := rq.form
	name := f.Get("name")
	f.require("name")
	if len(name) > maxKeyName {
		f.fail("name", "at most 128 characters")
	}
	if !f.ok() {
		return c.keysView(w, r, rq, http.StatusUnprocessableEntity, nil)
	}
	k, err := c.o.Keys.CreateAccessKey(r.Context(), name, f.On("read_only"))
	if err != nil {
		return err
	}
	c.log.Info("console: access key created", "keyId", k.ID, "name", k.Name, "readOnly", k.ReadOnly)
	// Answered directly, not redirected: the secret must not wait in a
	// session for a later page. The page is not cached (no-store).
	rq.form = newForm(nil)
	return c.keysView(w, r, rq, http.StatusOK, &k)
}

func (c *Console) findKey(r *http.Request) (daemon.AccessKey, error) {
	keys, err := c.o.Keys.AccessKeys(r.Context())
	if err != nil {
		return daemon.AccessKey{}, err
	}
	id := r.PathValue("id")
	i := slices.IndexFunc(keys, func(k daemon.AccessKey) bool { return k.ID == id })
	if i < 0 {
		return daemon.AccessKey{}, &api.Error{Type: "NotFound", Message: "no access key " + id, Status: http.StatusNotFound}
	}
	return keys[i], nil
}

func (c *Console) keyRevokePage(w http.ResponseWriter, r *http.Request, rq *request) error {
	k, err := c.findKey(r)
	if err != nil {
		return err
	}
	v := &view{Title: "Revoke access key " + k.ID, Nav: "keys"}
	return c.render(w, r, rq, http.StatusOK, v, keyRevokePage(v, k))
}

func (c *Console) keyRevoke(w http.ResponseWriter, r *http.Request, rq *request) error {
	k, err := c.findKey(r)
	if err != nil {
		return err
	}
	if k, err = c.o.Keys.RevokeAccessKey(r.Context(), k.ID); err != nil {
		if errors.Is(err, daemon.ErrNoSuchKey) {
			return &api.Error{Type: "NotFound", Message: err.Error(), Status: http.StatusNotFound}
		}
		return err
	}
	c.log.Info("console: access key revoked", "keyId", k.ID)
	return c.flashTo(w, r, rq, "/keys", flash{Kind: "ok", Message: "Revoked access key " + k.ID + ": the API refuses it from now on."})
}

func (c *Console) supportPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	return c.render(w, r, rq, http.StatusOK, &view{Title: "Support", Nav: "support"}, supportPage())
}

func (c *Console) supportDownload(w http.ResponseWriter, r *http.Request, rq *request) error {
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="rehost-support-`+time.Now().UTC().Format("20060102T150405Z")+`.zip"`)
	w.Header().Set("Cache-Control", "no-store")
	if err := c.svc.SupportBundle(r.Context(), w); err != nil {
		// The headers are gone: the truncated zip tells the browser.
		c.log.Error("console: support bundle", "err", err)
	}
	c.log.Info("console: support bundle downloaded", "remote", remoteIP(r))
	return nil
}
