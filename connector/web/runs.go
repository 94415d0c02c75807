package web

import (
	"net/http"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/pkg/store"
)

type stepView struct {
	Step, Title string
	// State is "done", "current", "failed" or "".
	State    string
	Duration string
}

type runView struct {
	Run     api.ReplicationRun
	JobID   string
	Server  string
	Final   bool
	Steps   []stepView
	Disks   []daemon.DiskProgress
	Import  int
	Failed  string
	Advice  string
	Events  []api.Event
	Current string
	// CurrentTitle and FailedTitle name those steps in words.
	CurrentTitle, FailedTitle string
}

// replicated says an incremental run has ended: its replication table
// then says what each disk sent, in place of the upload bars.
func (v *runView) replicated() bool {
	rep := replicationOf(v.Run)
	return v.Final && rep != nil && rep.Mode == store.ModeIncremental
}

// runView reads a run and what its page shows of it.
func (c *Console) runView(r *http.Request, id string, withEvents bool) (*runView, error) {
	out, err := c.svc.GetReplicationRun(r.Context(), &api.GetReplicationRunInput{ReplicationRunID: id})
	if err != nil {
		return nil, err
	}
	run := out.ReplicationRun
	v := &runView{Run: run, Final: !store.RunState(run.State).Live()}
	if run.Rehost != nil {
		v.JobID = run.Rehost.ReplicationJobID
	}
	var p daemon.RunProgress
	if run.Rehost != nil && run.Rehost.Progress != nil {
		p = *run.Rehost.Progress
	}
	v.Disks, v.Import, v.Failed = p.Disks, p.ImportPercent, p.Failed
	current := p.Step
	if current == "" && run.StageDetails != nil {
		current = run.StageDetails.Stage
	}
	v.Current = current
	took := map[string]string{}
	for _, s := range p.Steps {
		took[s.Step] = duration(s.Duration)
	}
	// The run's mode decides its steps; one that ran, or runs now, is
	// listed whatever the mode says.
	mode := ""
	if rep := replicationOf(run); rep != nil {
		mode = rep.Mode
	}
	for _, s := range replication.Steps() {
		if !s.In(mode) && took[s.Name] == "" && s.Name != current && s.Name != v.Failed {
			continue
		}
		if s.Name == current {
			v.CurrentTitle = s.Title
		}
		if s.Name == v.Failed {
			v.FailedTitle = s.Title
		}
		sv := stepView{Step: s.Name, Title: s.Title, Duration: took[s.Name]}
		switch {
		case s.Name == v.Failed:
			sv.State = "failed"
		case took[s.Name] != "":
			sv.State = "done"
		case s.Name == current && !v.Final:
			sv.State = "current"
		}
		v.Steps = append(v.Steps, sv)
	}
	if run.State == string(store.RunFailed) {
		v.Advice = replication.Advice(v.Failed, run.StatusMessage)
	}
	if withEvents {
		if jobs, err := c.svc.GetReplicationJobs(r.Context(), &api.GetReplicationJobsInput{ReplicationJobID: v.JobID}); err == nil && len(jobs.ReplicationJobList) == 1 {
			v.Server = vmOf(jobs.ReplicationJobList[0].VmServer).VmName
		}
		evs, err := c.svc.GetEvents(r.Context(), &api.GetEventsInput{ReplicationRunID: id, MaxResults: 50})
		if err != nil {
			return nil, err
		}
		v.Events = evs.Events
	}
	return v, nil
}

func (c *Console) runPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	v, err := c.runView(r, r.PathValue("id"), true)
	if err != nil {
		return err
	}
	return c.render(w, r, rq, http.StatusOK, &view{Title: "Run " + v.Run.ReplicationRunID, Nav: "jobs", Refresh: refreshIf(!v.Final)}, runPage(v))
}

// runLive is the live part of a run's page, which the page's script
// fetches every few seconds while the run goes on.
func (c *Console) runLive(w http.ResponseWriter, r *http.Request, rq *request) error {
	v, err := c.runView(r, r.PathValue("id"), false)
	if err != nil {
		return err
	}
	return c.send(w, r, http.StatusOK, runLive(v))
}
