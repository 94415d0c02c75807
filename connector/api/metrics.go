package api

import (
	"cmp"
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/fleet"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/connector/version"
	"github.com/rehost/rehost/pkg/metric"
	"github.com/rehost/rehost/pkg/store"
)

// Metrics are the connector's Prometheus metrics. The counters and
// histograms are fed by Watch, which follows the runs in the store (off the
// data path: it reads what the engine recorded); gauges are read at scrape
// time.
type Metrics struct {
	d   *daemon.Daemon
	log *slog.Logger
	reg *metric.Registry

	finished    *metric.Counter
	bytesStaged *metric.Counter
	stepSeconds *metric.Histogram
	lastSuccess *metric.Gauge
	runErrors   *metric.Counter
	apiCalls    *metric.Counter
	apiErrors   *metric.Counter

	// fleetMu guards the fleet's view one scrape reads (fleetStatus).
	fleetMu sync.Mutex
	fleet   fleet.Status
	fleetOK bool
	fleetAt time.Time

	mu        sync.Mutex
	sent      map[string]int64 // bytes counted per live run
	accounted map[string]bool  // finished runs counted
	lastEvent int64
}

// NewMetrics returns the metrics of the daemon d.
func NewMetrics(d *daemon.Daemon, log *slog.Logger) *Metrics {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	durations := metric.ExponentialBuckets(10, 2.5, 10) // 10 s … 10.6 h
	// In a fleet every member serves its own metrics: each series is
	// labelled with the connector, and counts the runs it ran.
	var constLabels []string
	if d.Member != nil {
		constLabels = []string{"connector", d.Member.ID()}
	}
	r := metric.NewRegistry(constLabels...)
	m := &Metrics{
		d: d, log: log, reg: r, sent: map[string]int64{}, accounted: map[string]bool{},
		finished:    r.Counter("rehost_replication_runs_finished_total", "Replication runs that ended, by final state (COMPLETED, FAILED).", "state"),
		bytesStaged: r.Counter("rehost_staged_bytes_total", "Bytes of disk images sent to the S3 staging bucket."),
		stepSeconds: r.Histogram("rehost_step_duration_seconds", "How long each step of a finished run took, by step (the steps' metric labels).",
			durations, "step"),
		lastSuccess: r.Gauge("rehost_job_last_success_timestamp_seconds", "When the job's latest successful run completed (Unix time).", "job"),
		runErrors:   r.Counter("rehost_run_errors_total", "Failed runs by the step they failed in (its metric label).", "step"),
		apiCalls:    r.Counter("rehost_api_requests_total", "API requests by operation.", "operation"),
		apiErrors:   r.Counter("rehost_api_errors_total", "API requests that failed, by error type.", "type"),
	}
	r.GaugeFunc("rehost_replication_runs", "Replication runs now PENDING or ACTIVE.", []string{"state"}, m.runsInState)
	r.GaugeFunc("rehost_import_slots_in_use", "VM Import slots taken (one per import task), by region and kind (image, snapshot).", []string{"region", "kind"}, func(emit func(float64, ...string)) {
		for p, n := range d.Sched.ImportSlotsInUse() {
			emit(float64(n), p.Region, p.Kind)
		}
	})
	r.GaugeFunc("rehost_import_slots_waiting", "Runs waiting for VM Import slots, by region and kind (granted oldest first).", []string{"region", "kind"}, func(emit func(float64, ...string)) {
		for p, n := range d.Sched.ImportSlotsWaiting() {
			emit(float64(n), p.Region, p.Kind)
		}
	})
	r.GaugeFunc("rehost_fleet_members", "Connectors of the fleet, by status (HEALTHY: heartbeat younger than the lease TTL).", []string{"status"}, m.fleetMembers)
	r.GaugeFunc("rehost_fleet_member_runs", "Runs each member of the fleet holds a live lease on.", []string{"member"}, m.fleetMemberRuns)
	r.GaugeFunc("rehost_fleet_leader", "1 if this connector schedules the fleet's due runs.", nil, func(emit func(float64, ...string)) {
		if d.Member == nil {
			return
		}
		lead := 0.0
		if d.Member.Leader() {
			lead = 1
		}
		emit(lead)
	})
	r.GaugeFunc("rehost_bandwidth_bytes_per_second", "Bytes per second this connector's runs sent to S3 and EBS together, over the last five seconds.", nil, func(emit func(float64, ...string)) {
		emit(d.Bandwidth.Status().Throughput)
	})
	r.GaugeFunc("rehost_bandwidth_cap_bytes_per_second", "The bandwidth cap in force, bytes per second (0: no cap).", nil, func(emit func(float64, ...string)) {
		emit(float64(d.Bandwidth.Status().Rate))
	})
	r.GaugeFunc("rehost_staging_buffer_bytes", "Bytes of S3 part buffers the connector holds, free or in use (at most the staging memory).", nil, func(emit func(float64, ...string)) {
		emit(float64(d.StagingBuffers().Stats().Held))
	})
	r.GaugeFunc("rehost_staging_buffer_budget_bytes", "The staging memory: the most bytes of S3 part buffers all runs hold together.", nil, func(emit func(float64, ...string)) {
		emit(float64(d.StagingBuffers().Budget()))
	})
	r.GaugeFunc("rehost_staging_buffer_waiting", "Parts waiting for a buffer because the runs in flight hold the staging memory.", nil, func(emit func(float64, ...string)) {
		emit(float64(d.StagingBuffers().Stats().Waiting))
	})
	r.GaugeFunc("rehost_build_info", "The connector's version.", []string{"version"}, func(emit func(float64, ...string)) {
		emit(1, version.String())
	})
	return m
}

// ServeHTTP serves the metrics in the Prometheus text format.
func (m *Metrics) ServeHTTP(w http.ResponseWriter, r *http.Request) { m.reg.ServeHTTP(w, r) }

// apiCall counts a request; op is an operation's name, or what the caller
// put in X-Amz-Target, which must not mint label values.
func (m *Metrics) apiCall(op, errType string) {
	label := "unknown"
	if _, ok := operations[op]; ok {
		label = op[strings.IndexByte(op, '.')+1:]
	} else if slices.Contains(operationNames, op) {
		label = op
	}
	m.apiCalls.Inc(label)
	if errType != "" {
		m.apiErrors.Inc(errType)
	}
}

// Watch follows the runs every interval until ctx ends: bytes staged while
// they run, and when each ends its outcome and step durations. Runs already
// active when it starts count only what they stage from then on.
func (m *Metrics) Watch(ctx context.Context, interval time.Duration) {
	m.start(ctx)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := m.poll(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("update metrics", "err", err)
			}
		}
	}
}

// start records the latest success of every job, where runs stand, and
// the newest event, as the baseline.
func (m *Metrics) start(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if evs, err := m.d.Store.Events(ctx, store.EventFilter{Limit: 1}); err == nil && len(evs) > 0 {
		m.lastEvent = evs[0].ID
	}
	jobs, err := m.d.Store.ListJobs(ctx, store.JobFilter{})
	if err != nil {
		return
	}
	for _, j := range jobs {
		runs, err := m.d.Store.ListRuns(ctx, j.ReplicationJobID, 50)
		if err != nil {
			continue
		}
		for _, r := range runs {
			if r.State == store.RunCompleted && !r.CompletedTime.IsZero() {
				m.lastSuccess.Set(float64(r.CompletedTime.Unix()), j.ReplicationJobID)
				break
			}
		}
	}
	if active, err := m.active(ctx); err == nil {
		for _, r := range active {
			if p, err := m.d.RunProgress(ctx, r); err == nil {
				m.sent[r.ReplicationRunID] = sentBytes(p)
			}
		}
	}
}

func sentBytes(p daemon.RunProgress) int64 {
	var n int64
	for _, d := range p.Disks {
		n += d.Sent
	}
	return n
}

// poll counts the bytes of live runs, and accounts for runs that ended: it
// finds them among the runs it saw live and the runs of new events (a run
// shorter than the interval is found by its events).
func (m *Metrics) poll(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	candidates := map[string]bool{}
	for id := range m.sent {
		candidates[id] = true
	}
	evs, err := m.d.Store.Events(ctx, store.EventFilter{Limit: 500})
	if err != nil {
		return err
	}
	for _, e := range evs {
		// A member of a fleet counts the runs it saw in flight only.
		if e.ID > m.lastEvent && e.RunID != "" && m.d.Member == nil {
			candidates[e.RunID] = true
		}
	}
	if len(evs) > 0 && evs[0].ID > m.lastEvent {
		m.lastEvent = evs[0].ID
	}
	active, err := m.active(ctx)
	if err != nil {
		return err
	}
	for _, r := range active {
		m.count(ctx, r)
		delete(candidates, r.ReplicationRunID)
	}
	for id := range candidates {
		r, err := m.d.Store.GetRun(ctx, id)
		if err != nil || m.accounted[id] || (r.State != store.RunCompleted && r.State != store.RunFailed) {
			continue
		}
		p := m.count(ctx, r)
		delete(m.sent, id)
		m.accounted[id] = true
		m.finished.Inc(string(r.State))
		for _, s := range p.Steps {
			if s.Duration > 0 {
				m.stepSeconds.Observe(s.Duration.Seconds(), replication.StepInfo(s.Step).Metric)
			}
		}
		if r.State == store.RunCompleted {
			m.lastSuccess.Set(float64(r.CompletedTime.Unix()), r.ReplicationJobID)
		} else {
			m.runErrors.Inc(cmp.Or(replication.StepInfo(p.Failed).Metric, "unknown"))
		}
	}
	return nil
}

// active lists the ACTIVE runs this connector runs: all of them alone, its
// own in a fleet.
func (m *Metrics) active(ctx context.Context) ([]store.ReplicationRun, error) {
	if m.d.Member == nil {
		return m.d.Store.RunsInState(ctx, store.RunActive)
	}
	var out []store.ReplicationRun
	for _, id := range m.d.Sched.InFlight() {
		if r, err := m.d.Store.GetRun(ctx, id); err == nil && r.State == store.RunActive {
			out = append(out, r)
		}
	}
	return out, nil
}

// count adds what the run staged since it was last seen.
func (m *Metrics) count(ctx context.Context, r store.ReplicationRun) daemon.RunProgress {
	p, err := m.d.RunProgress(ctx, r)
	if err != nil {
		return p
	}
	n := sentBytes(p)
	if d := n - m.sent[r.ReplicationRunID]; d > 0 {
		m.bytesStaged.Add(float64(d))
	}
	m.sent[r.ReplicationRunID] = n
	return p
}

// runsInState counts the runs waiting and running, at scrape time; in a
// fleet, the running ones are those this member runs.
func (m *Metrics) runsInState(emit func(float64, ...string)) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, s := range []store.RunState{store.RunPending, store.RunActive} {
		var runs []store.ReplicationRun
		var err error
		if s == store.RunActive {
			runs, err = m.active(ctx)
		} else {
			runs, err = m.d.Store.RunsInState(ctx, s)
		}
		if err != nil {
			m.log.Warn("metrics: count runs", "err", err)
			continue
		}
		emit(float64(len(runs)), string(s))
	}
}

// fleetStatus is the fleet's view for one scrape: both fleet families read
// it, so it is asked of the store once and reused for a second.
func (m *Metrics) fleetStatus() (fleet.Status, bool) {
	if m.d.Member == nil {
		return fleet.Status{}, false
	}
	m.fleetMu.Lock()
	defer m.fleetMu.Unlock()
	if time.Since(m.fleetAt) < time.Second {
		return m.fleet, m.fleetOK
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := m.d.FleetStatus(ctx)
	if err != nil {
		m.log.Warn("metrics: fleet status", "err", err)
	}
	m.fleet, m.fleetOK, m.fleetAt = st, err == nil, time.Now()
	return m.fleet, m.fleetOK
}

// fleetMembers counts the fleet's members by health, from the shared store.
func (m *Metrics) fleetMembers(emit func(float64, ...string)) {
	st, ok := m.fleetStatus()
	if !ok {
		return
	}
	healthy := 0
	for _, mem := range st.Members {
		if mem.Healthy {
			healthy++
		}
	}
	emit(float64(healthy), ConnectorHealthy)
	emit(float64(len(st.Members)-healthy), ConnectorUnhealthy)
}

// fleetMemberRuns counts the runs each member holds a live lease on.
func (m *Metrics) fleetMemberRuns(emit func(float64, ...string)) {
	st, _ := m.fleetStatus()
	for _, mem := range st.Members {
		emit(float64(mem.RunsInFlight), mem.ID)
	}
}
