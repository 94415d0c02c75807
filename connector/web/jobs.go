package web

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/a-h/templ"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/pkg/store"
)

// jobAction is a button of the job page's toolbar: a POST to the job's
// URL followed by Path.
type jobAction struct {
	Path        templ.SafeURL
	Label       string
	Primary     bool
	DescribedBy string // id of the element that explains the button
}

// jobActions are the toolbar's POST buttons that apply to job in its state.
func jobActions(j api.ReplicationJob) []jobAction {
	var as []jobAction
	if j.State != "COMPLETED" && j.State != "DELETED" && j.State != "DELETING" {
		as = append(as, jobAction{Path: "/start", Label: "Start a run now", Primary: true})
		if jobMode(j) == "incremental" {
			as = append(as, jobAction{Path: "/verify", Label: "Verify now", DescribedBy: "verify-hint"})
		}
	}
	switch j.State {
	case "ACTIVE", "PENDING", "FAILING":
		as = append(as, jobAction{Path: "/pause", Label: "Pause"})
	case "PAUSED", "PAUSED_ON_FAILURE", "FAILED":
		as = append(as, jobAction{Path: "/resume", Label: "Resume"})
	}
	return as
}

// jobFields maps words of the API's job errors to the form's fields.
var jobFields = map[string]string{
	"serverid": "server", "server ": "server", "frequency": "frequency", "seedreplicationtime": "seed",
	"nextreplicationrunstarttime": "next_run", "licensetype": "license", "numberofrecentamistokeep": "keep",
	"kmskeyid": "kms_key", "rolename": "role", "description": "description",
	"rehostmode": "mode", "rehostfrequencyminutes": "every_minutes", "rehostnoconversion": "no_conversion",
}

// schedule is what the job form says of a job's mode and frequency.
type schedule struct {
	mode string
	// hours is nil when the form gives none (minutes instead, or a run-once
	// job); minutes is 0 unless a sub-hour frequency was chosen.
	hours        *int
	minutes      int
	noConversion bool
}

// readSchedule reads the mode and frequency fields, failing them on the
// form where they do not fit together.
func readSchedule(f *form, runOnce bool) schedule {
	s := schedule{mode: cmp.Or(f.Get("mode"), "full"), noConversion: f.On("no_conversion")}
	if s.mode != "full" && s.mode != store.ModeIncremental {
		f.fail("mode", "choose full or incremental")
	}
	if m := f.Get("every_minutes"); m != "" {
		n, err := strconv.Atoi(m)
		switch {
		case err != nil || !slices.Contains(store.SubHourly, n):
			f.fail("every_minutes", "choose 15, 20 or 30 minutes, or leave it empty to give hours")
		case s.mode != store.ModeIncremental:
			f.fail("every_minutes", "runs below an hour apart need incremental mode (a full run copies every disk whole): choose Incremental, or leave this empty and give hours")
		}
		s.minutes = n
	} else if !runOnce || f.Get("frequency") != "" {
		h := whole(f, "frequency", 1, 24, "a whole number of hours from 1 to 24")
		s.hours = &h
	}
	if s.noConversion && s.mode != store.ModeIncremental {
		f.fail("no_conversion", "only an incremental job's AMIs are registered on its replicas: choose Incremental, or untick this")
	}
	return s
}

func (c *Console) allJobs(ctx context.Context) ([]api.ReplicationJob, error) {
	in := &api.GetReplicationJobsInput{MaxResults: 1000}
	var all []api.ReplicationJob
	for {
		out, err := c.svc.GetReplicationJobs(ctx, in)
		if err != nil {
			return nil, err
		}
		all = append(all, out.ReplicationJobList...)
		if in.NextToken = out.NextToken; in.NextToken == "" {
			return all, nil
		}
	}
}

// liveJobs leaves out deleted jobs.
func liveJobs(jobs []api.ReplicationJob) []api.ReplicationJob {
	return slices.DeleteFunc(jobs, func(j api.ReplicationJob) bool { return j.State == string(store.JobDeleted) })
}

func (c *Console) jobsPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	jobs, err := c.allJobs(r.Context())
	if err != nil {
		return err
	}
	return c.render(w, r, rq, http.StatusOK, &view{Title: "Replication jobs", Nav: "jobs", Refresh: refreshIf(hasLiveRun(jobs))}, jobsPage(liveJobs(jobs)))
}

func hasLiveRun(jobs []api.ReplicationJob) bool {
	for _, j := range jobs {
		if len(j.ReplicationRunList) > 0 && store.RunState(j.ReplicationRunList[0].State).Live() {
			return true
		}
	}
	return false
}

type jobFormView struct {
	Servers []api.Server
	Job     *api.ReplicationJob
}

func (c *Console) jobNewPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	return c.jobNewView(w, r, rq, nil, http.StatusOK)
}

func (c *Console) jobNewView(w http.ResponseWriter, r *http.Request, rq *request, wz *wizardView, status int) error {
	_, all, err := c.allServers(r.Context())
	if err != nil {
		return err
	}
	f := rq.form
	if f == nil {
		f = newForm(nil)
		f.Values.Set("server", r.URL.Query().Get("server"))
		f.Values.Set("frequency", "12")
		f.Values.Set("mode", "full")
		f.Values.Set("license", store.LicenseAWS)
		f.Values.Set("keep", "3")
	}
	d := jobFormView{}
	for _, s := range all {
		if s.ReplicationJobID == "" || s.ReplicationJobTerminated {
			d.Servers = append(d.Servers, s)
		}
	}
	v := &view{Title: "New replication job", Nav: "jobs", Wizard: wz, Form: f}
	return c.render(w, r, rq, status, v, jobNewPage(v, d))
}

// whole reads a whole number field within [lo, hi].
func whole(f *form, name string, lo, hi int, msg string) int {
	v := f.Get(name)
	n, err := strconv.Atoi(v)
	if v == "" || err != nil || n < lo || n > hi {
		f.fail(name, msg)
	}
	return n
}

// localTime reads a datetime-local field. The browser's script sends the
// zone offset in tz_offset (minutes behind UTC, as getTimezoneOffset
// gives it); without it the time is UTC, as the page then says.
func localTime(f *form, name string) (time.Time, bool) {
	v := f.Get(name)
	if v == "" {
		return time.Time{}, false
	}
	var t time.Time
	var err error
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05"} {
		if t, err = time.Parse(layout, v); err == nil {
			break
		}
	}
	if err != nil {
		f.fail(name, "not a date and time: want one like 2026-12-01T22:00")
		return time.Time{}, false
	}
	if off, err := strconv.Atoi(f.Get("tz_offset")); err == nil && off >= -16*60 && off <= 16*60 {
		t = t.Add(time.Duration(off) * time.Minute)
	}
	return t, true
}

func (c *Console) jobCreate(w http.ResponseWriter, r *http.Request, rq *request) error {
	f := rq.form
	wz, err := c.inWizard(r, rq, "job")
	if err != nil {
		return err
	}
	in := &api.CreateReplicationJobInput{ServerID: f.Get("server"), RunOnce: f.On("run_once"), LicenseType: f.Get("license"),
		RoleName: f.Get("role"), Description: f.Get("description"), Encrypted: f.On("encrypted"), KmsKeyID: f.Get("kms_key"),
		RehostAcceptWarnings: f.On("accept_warnings")}
	f.require("server")
	sc := readSchedule(f, in.RunOnce)
	in.RehostMode, in.Frequency, in.RehostFrequencyMinutes, in.RehostNoConversion = sc.mode, sc.hours, sc.minutes, sc.noConversion
	in.NumberOfRecentAmisToKeep = whole(f, "keep", 0, 1000, "a whole number from 0 (keep every AMI) to 1000")
	seed := api.At(time.Now().UTC().Truncate(time.Second))
	if t, ok := localTime(f, "seed"); ok {
		seed = api.At(t)
	}
	in.SeedReplicationTime = &seed
	if in.KmsKeyID != "" && !in.Encrypted {
		f.fail("kms_key", "a KMS key encrypts the AMIs: tick “Encrypt the AMIs” too, or leave the key empty")
	}
	if !f.ok() {
		return c.jobNewView(w, r, rq, wz, http.StatusUnprocessableEntity)
	}
	out, err := c.svc.CreateReplicationJob(r.Context(), in)
	if err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		f.apiError(ae, jobFields)
		return c.jobNewView(w, r, rq, wz, http.StatusUnprocessableEntity)
	}
	c.log.Info("console: job created", "job", out.ReplicationJobID, "server", in.ServerID)
	msg := "Created job " + out.ReplicationJobID + "."
	if wz != nil {
		msg = "Setup is complete: job " + out.ReplicationJobID + " is created and runs on its schedule. Its runs show here as they go."
	}
	return c.flashTo(w, r, rq, "/jobs/"+out.ReplicationJobID, flash{Kind: "ok", Message: msg})
}

// amiView is an AMI a job made.
type amiView struct {
	ID, RunID string
	Made      api.Time
	// Deleted says retention (or a job deletion) removed it.
	Deleted bool
}

type jobView struct {
	Job    api.ReplicationJob
	Runs   []api.ReplicationRun
	AMIs   []amiView
	Events []api.Event
	// Live is the run in progress or waiting, if any.
	Live *api.ReplicationRun
	// Advice says what to do about a failing job.
	Advice string
}

var amiRE = regexp.MustCompile(`ami-[0-9a-f]{8,17}`)

func (c *Console) job(ctx context.Context, id string) (*jobView, error) {
	out, err := c.svc.GetReplicationRuns(ctx, &api.GetReplicationRunsInput{ReplicationJobID: id, MaxResults: 25})
	if err != nil {
		return nil, err
	}
	evs, err := c.svc.GetEvents(ctx, &api.GetEventsInput{ReplicationJobID: id, MaxResults: 200})
	if err != nil {
		return nil, err
	}
	v := &jobView{Job: *out.ReplicationJob, Runs: out.ReplicationRunList, Events: evs.Events}
	if len(v.Events) > 30 {
		v.Events = v.Events[:30]
	}
	deleted := map[string]bool{}
	for _, e := range evs.Events {
		if _, gone, ok := strings.Cut(e.Message, "deleted"); ok && strings.HasPrefix(e.Message, "retention:") {
			for _, a := range amiRE.FindAllString(gone, -1) {
				deleted[a] = true
			}
		}
	}
	for i, r := range v.Runs {
		if r.AmiID != "" {
			v.AMIs = append(v.AMIs, amiView{ID: r.AmiID, RunID: r.ReplicationRunID, Made: r.CompletedTime, Deleted: deleted[r.AmiID]})
		}
		if v.Live == nil && store.RunState(r.State).Live() {
			v.Live = &v.Runs[i]
		}
	}
	switch store.JobState(v.Job.State) {
	case store.JobPausedOnFailure:
		v.Advice = "Its automatic runs are paused after repeated failures. Read the last run's error, fix the cause, then resume the job."
	case store.JobFailed:
		v.Advice = "Its run failed. Read the run's error, fix the cause, then resume the job to run it again."
	case store.JobFailing:
		v.Advice = "Recent runs failed; it keeps trying on its schedule and pauses after a few more failures. Read the last run's error."
	}
	return v, nil
}

func (c *Console) jobPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	v, err := c.job(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	pv := &view{Title: "Job " + v.Job.ReplicationJobID, Nav: "jobs", Refresh: refreshIf(v.Live != nil)}
	return c.render(w, r, rq, http.StatusOK, pv, jobPage(pv, v))
}

func (c *Console) jobEditPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	v, err := c.job(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	f := newForm(nil)
	j := v.Job
	f.Values.Set("frequency", strconv.Itoa(j.Frequency))
	f.Values.Set("mode", jobMode(j))
	if j.Rehost != nil && j.Rehost.FrequencyMinutes > 0 {
		f.Values.Set("frequency", "")
		f.Values.Set("every_minutes", strconv.Itoa(j.Rehost.FrequencyMinutes))
	}
	if j.Rehost != nil && j.Rehost.NoConversion {
		f.Values.Set("no_conversion", "on")
	}
	f.Values.Set("license", cmp.Or(j.LicenseType, store.LicenseAWS))
	f.Values.Set("keep", strconv.Itoa(j.NumberOfRecentAmisToKeep))
	f.Values.Set("role", j.RoleName)
	f.Values.Set("description", j.Description)
	f.Values.Set("kms_key", j.KmsKeyID)
	if j.Encrypted {
		f.Values.Set("encrypted", "on")
	}
	pv := &view{Title: "Edit job " + j.ReplicationJobID, Nav: "jobs", Form: f}
	return c.render(w, r, rq, http.StatusOK, pv, jobEditPage(pv, v))
}

func (c *Console) jobUpdate(w http.ResponseWriter, r *http.Request, rq *request) error {
	f := rq.form
	id := r.PathValue("id")
	v, err := c.job(r.Context(), id)
	if err != nil {
		return err
	}
	in := &api.UpdateReplicationJobInput{ReplicationJobID: id}
	license, role, desc, kms, enc := f.Get("license"), f.Get("role"), f.Get("description"), f.Get("kms_key"), f.On("encrypted")
	in.LicenseType, in.RoleName, in.Description, in.KmsKeyID, in.Encrypted = &license, &role, &desc, &kms, &enc
	sc := readSchedule(f, v.Job.RunOnce)
	in.RehostMode, in.RehostNoConversion = &sc.mode, &sc.noConversion
	if sc.minutes > 0 {
		in.RehostFrequencyMinutes = &sc.minutes
	} else {
		in.Frequency = sc.hours
	}
	keep := whole(f, "keep", 0, 1000, "a whole number from 0 (keep every AMI) to 1000")
	in.NumberOfRecentAmisToKeep = &keep
	if t, ok := localTime(f, "next_run"); ok {
		if t.Before(time.Now()) {
			f.fail("next_run", "this time has passed: choose one ahead, or leave it empty to keep the schedule")
		}
		at := api.At(t)
		in.NextReplicationRunStartTime = &at
	}
	if kms != "" && !enc {
		f.fail("kms_key", "a KMS key encrypts the AMIs: tick “Encrypt the AMIs” too, or leave the key empty")
	}
	if f.ok() {
		if _, err = c.svc.UpdateReplicationJob(r.Context(), in); err == nil {
			c.log.Info("console: job updated", "job", id)
			return c.flashTo(w, r, rq, "/jobs/"+id, flash{Kind: "ok", Message: "Saved the job's settings."})
		}
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		f.apiError(ae, jobFields)
	}
	pv := &view{Title: "Edit job " + id, Nav: "jobs"}
	return c.render(w, r, rq, http.StatusUnprocessableEntity, pv, jobEditPage(pv, v))
}

// jobAction runs one of the job page's buttons and comes back to it with
// the outcome.
func (c *Console) jobAction(w http.ResponseWriter, r *http.Request, rq *request, what string, do func(ctx context.Context, id string) (string, error)) error {
	id := r.PathValue("id")
	msg, err := do(r.Context(), id)
	if err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		return c.flashTo(w, r, rq, "/jobs/"+id, flash{Kind: "error", Message: "Could not " + what + ": " + ae.Message})
	}
	c.log.Info("console: job "+what, "job", id)
	return c.flashTo(w, r, rq, "/jobs/"+id, flash{Kind: "ok", Message: msg})
}

func (c *Console) jobStart(w http.ResponseWriter, r *http.Request, rq *request) error {
	return c.jobAction(w, r, rq, "start a run", func(ctx context.Context, id string) (string, error) {
		out, err := c.svc.StartOnDemandReplicationRun(ctx, &api.StartOnDemandReplicationRunInput{ReplicationJobID: id})
		if err != nil {
			return "", err
		}
		return "Started run " + out.ReplicationRunID + ".", nil
	})
}

// jobVerify asks for a full verification of an incremental job's
// replicas, as `rehost run verify` does.
func (c *Console) jobVerify(w http.ResponseWriter, r *http.Request, rq *request) error {
	return c.jobAction(w, r, rq, "verify the replicas", func(ctx context.Context, id string) (string, error) {
		out, err := c.svc.VerifyReplicationJob(ctx, &api.VerifyReplicationJobInput{ReplicationJobID: id})
		if err != nil {
			return "", err
		}
		return sentence(out.Message), nil
	})
}

// sentence is an API message as a sentence: a capital first, a full stop
// last.
func sentence(msg string) string {
	if msg == "" {
		return msg
	}
	msg = strings.ToUpper(msg[:1]) + msg[1:]
	if !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	return msg
}

func (c *Console) jobPause(pause bool) handlerFunc {
	what, done := "resume the job", "Resumed the job: its runs follow the schedule again."
	if pause {
		what, done = "pause the job", "Paused the job: no automatic runs until you resume it (Start now still works)."
	}
	return func(w http.ResponseWriter, r *http.Request, rq *request) error {
		return c.jobAction(w, r, rq, what, func(ctx context.Context, id string) (string, error) {
			_, err := c.svc.UpdateReplicationJob(ctx, &api.UpdateReplicationJobInput{ReplicationJobID: id, RehostPaused: &pause})
			return done, err
		})
	}
}

func (c *Console) jobDeletePage(w http.ResponseWriter, r *http.Request, rq *request) error {
	v, err := c.job(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	pv := &view{Title: "Delete job " + v.Job.ReplicationJobID, Nav: "jobs"}
	return c.render(w, r, rq, http.StatusOK, pv, jobDeletePage(pv, v))
}

func (c *Console) jobDelete(w http.ResponseWriter, r *http.Request, rq *request) error {
	id := r.PathValue("id")
	amis := rq.form.On("delete_amis")
	if _, err := c.svc.DeleteReplicationJob(r.Context(), &api.DeleteReplicationJobInput{ReplicationJobID: id, RehostDeleteAmis: amis}); err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		return c.flashTo(w, r, rq, "/jobs/"+id, flash{Kind: "error", Message: "Could not delete the job: " + ae.Message})
	}
	c.log.Info("console: job deleted", "job", id, "deleteAMIs", amis)
	msg := fmt.Sprintf("Deleted job %s; its AMIs stay.", id)
	if amis {
		msg = fmt.Sprintf("Deleted job %s and its AMIs.", id)
	}
	return c.flashTo(w, r, rq, "/jobs", flash{Kind: "ok", Message: msg})
}
