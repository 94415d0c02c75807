package web

import (
	"net/http"
	"strings"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/pkg/store"
)

// runSteps are a run's steps in the order they happen, with what each does
// in words.
var runSteps = []struct{ step, title string }{
	{replication.StepSnapshot, "Snapshot the VM"},
	{replication.StepStage, "Export and upload the disks"},
	{replication.StepReleaseSnapshot, "Remove the VM snapshot"},
	{replication.StepImport, "Start VM Import"},
	{replication.StepWaitImport, "VM Import"},
	{replication.StepFinalize, "Name and tag the AMI"},
	{replication.StepUnstage, "Delete the staged disks"},
	{replication.StepRetention, "Apply AMI retention"},
}

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
	for _, s := range runSteps {
		if s.step == current {
			v.CurrentTitle = s.title
		}
		if s.step == v.Failed {
			v.FailedTitle = s.title
		}
		sv := stepView{Step: s.step, Title: s.title, Duration: took[s.step]}
		switch {
		case s.step == v.Failed:
			sv.State = "failed"
		case took[s.step] != "":
			sv.State = "done"
		case s.step == current && !v.Final:
			sv.State = "current"
		}
		v.Steps = append(v.Steps, sv)
	}
	if run.State == string(store.RunFailed) {
		v.Advice = advice(v.Failed, run.StatusMessage)
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
	return c.render(w, r, rq, http.StatusOK, &view{Title: "Run " + v.Run.ReplicationRunID, Nav: "jobs", Live: !v.Final}, runPage(v))
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

// advice says what to do about a failed run, by the step it failed in;
// the message itself says what happened.
func advice(step, msg string) string {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "not registered"):
		return "Register the connector with AWS (AWS page), then start the job again."
	case strings.Contains(m, "authentication") || strings.Contains(m, "password"):
		return "The source refused the connector's credentials: fix them (remove and add the source again with the right password), test the connection on the Sources page, then start the job again."
	case step == replication.StepSnapshot || strings.Contains(m, "unreachable"):
		return "The connector could not snapshot the VM: test the source on the Sources page, check that the VM still exists and that no other task holds it, then start the job again."
	case step == replication.StepStage:
		return "Exporting or uploading a disk failed: check the source and AWS on the Health page (network, the staging bucket), then start the job again. Nothing is left behind: the connector removed what it had staged."
	case step == replication.StepImport || step == replication.StepWaitImport:
		return "VM Import refused the image: the message above is AWS's own. Check that the VM's operating system and boot mode are ones VM Import supports and that its boot disk comes first; after fixing the VM, start the job again."
	case step == replication.StepFinalize || step == replication.StepUnstage || step == replication.StepRetention:
		return "The AMI was made but the work after it failed: check AWS on the Health page; the next run finishes the cleanup."
	}
	return "Fix the cause the message names, then start the job again. If it keeps failing, download a support bundle (Support page) for whoever helps you."
}
