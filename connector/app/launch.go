package app

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// Launches. A launch is recorded in the store before its stack is created
// (state PENDING, with the stack's name, template and parameters) and the
// stack is created with the launch id as its client request token, so a
// connector that dies between the two finds the stack by name, or creates
// it, when it restarts; terminating is recorded before the stack is
// deleted. The stack owns the instances: deleting it removes them, and
// every instance carries the stack's tags (rehost:app, rehost:launch), so a
// count at the peers finds anything left.
//
// While a launch is in progress the Launcher polls its stack: the state
// comes from the stack's status and, for a failure, from the stack's events
// (the failing resource and CloudFormation's reason); each instance gets
// the boot check as soon as it exists, and a server's verdict is signalled
// to its group's wait condition, which lets the next group start (or, for
// a server that failed to boot, fails the stack and rolls it back with the
// console's last line as the reason).

// Launcher launches and terminates applications and watches their stacks.
type Launcher struct {
	Store Store
	// Cloud returns the registered AWS target.
	Cloud func(ctx context.Context) (Cloud, error)
	Log   *slog.Logger
	// Poll is how often a launch in progress is looked at (default 5 s).
	Poll time.Duration
	// BootTimeout is each group's time to boot, in seconds (default
	// DefaultBootTimeout).
	BootTimeout int
	// AgentGrace is how long a booted server's SSM agent has to register
	// before its validation command is given up as not run (default 3
	// minutes).
	AgentGrace time.Duration

	mu   sync.Mutex // one launch operation at a time in this process
	wake chan struct{}
	once sync.Once
}

func (l *Launcher) log() *slog.Logger {
	if l.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l.Log
}

func (l *Launcher) wakeChan() chan struct{} {
	l.once.Do(func() { l.wake = make(chan struct{}, 1) })
	return l.wake
}

// Wake makes Run look at the launches now.
func (l *Launcher) Wake() {
	select {
	case l.wakeChan() <- struct{}{}:
	default:
	}
}

func (l *Launcher) cloud(ctx context.Context) (Cloud, error) {
	c, err := l.Cloud(ctx)
	if err != nil {
		return nil, notReady("%v", err)
	}
	return c, nil
}

// live returns the app's launch of kind that is not terminated, if any.
func (l *Launcher) live(ctx context.Context, appID string, kind store.LaunchKind) (*store.Launch, error) {
	ls, err := l.Store.ListLaunches(ctx, appID)
	if err != nil {
		return nil, err
	}
	for i := range ls {
		if ls[i].Kind == kind && ls[i].State != store.LaunchTerminated {
			return &ls[i], nil
		}
	}
	return nil, nil
}

var stackUnsafe = regexp.MustCompile(`[^A-Za-z0-9-]+`)

// stackName is "rehost-<app>-<kind>-<random>": readable, within
// CloudFormation's 128 characters, distinct from earlier launches.
func stackName(appName string, kind store.LaunchKind) string {
	n := strings.Trim(stackUnsafe.ReplaceAllString(appName, "-"), "-")
	if len(n) > 80 {
		n = n[:80]
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	return "rehost-" + cmp.Or(n, "app") + "-" + string(kind) + "-" + hex.EncodeToString(b[:])
}

func stackTags(l store.Launch) map[string]string {
	return map[string]string{TagApp: l.AppID, TagLaunch: l.LaunchID, TagKind: string(l.Kind)}
}

// Launch launches the app (kind cutover or test) from its template: a new
// stack, or — when that kind is launched already — an update of its stack
// (a delta launch, with the servers' newest AMIs). Nothing is created when
// the app cannot be launched as configured (see Prepare).
func (l *Launcher) Launch(ctx context.Context, appID string, kind store.LaunchKind) (store.Launch, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cloud, err := l.cloud(ctx)
	if err != nil {
		return store.Launch{}, err
	}
	cur, err := l.live(ctx, appID, kind)
	if err != nil {
		return store.Launch{}, err
	}
	if cur != nil {
		switch cur.State {
		case store.LaunchLaunched, store.LaunchUpdateFailed:
		case store.LaunchFailed, store.LaunchTerminateFailed:
			return *cur, notReady("the %s launch %s of this app is %s (%s): terminate it first", kind, cur.LaunchID, cur.State, cur.StatusMessage)
		default:
			return *cur, notReady("the %s launch %s of this app is %s: wait for it to finish", kind, cur.LaunchID, cur.State)
		}
	}
	plan, err := Prepare(ctx, l.Store, cloud, appID)
	if err != nil {
		return store.Launch{}, err
	}
	params := plan.Parameters(kind, l.BootTimeout)
	defer l.Wake()
	if cur != nil {
		return l.update(ctx, cloud, *cur, plan, params)
	}
	rec, err := l.Store.CreateLaunch(ctx, store.Launch{AppID: appID, Kind: kind, StackName: stackName(plan.App.Name, kind),
		Template: string(plan.Template), Parameters: params, Servers: plan.Servers})
	if err != nil {
		return store.Launch{}, err
	}
	l.log().Info("launching app", "app", appID, "launch", rec.LaunchID, "kind", kind, "stack", rec.StackName)
	return l.create(ctx, cloud, rec)
}

// create makes the launch's stack (again, after a restart: the token finds
// a stack made before).
func (l *Launcher) create(ctx context.Context, cloud Cloud, rec store.Launch) (store.Launch, error) {
	id, err := cloud.CreateStack(ctx, awstarget.StackInput{Name: rec.StackName, Template: rec.Template, Parameters: rec.Parameters,
		Tags: stackTags(rec), Token: rec.LaunchID})
	if err != nil {
		st, derr := cloud.DescribeStack(ctx, rec.StackName)
		if derr != nil || st == nil {
			if !refused(err) {
				return rec, err // not reached: stays PENDING, retried by Run
			}
			out, uerr := l.Store.UpdateLaunch(ctx, rec.LaunchID, func(x *store.Launch) error {
				x.State, x.StatusMessage = store.LaunchTerminated, "CloudFormation refused the stack: "+err.Error()
				return nil
			})
			if uerr != nil {
				return rec, uerr
			}
			return out, invalid("CloudFormation refused the stack of app %s: %v", rec.AppID, err)
		}
		id = st.ID
	}
	return l.Store.UpdateLaunch(ctx, rec.LaunchID, func(x *store.Launch) error {
		if x.State == store.LaunchPending {
			x.State, x.StackID, x.StackStatus = store.LaunchCreating, id, "CREATE_IN_PROGRESS"
		}
		return nil
	})
}

// update is a delta launch: the stack takes the new template.
func (l *Launcher) update(ctx context.Context, cloud Cloud, cur store.Launch, plan *Plan, params map[string]string) (store.Launch, error) {
	prev := cur.State
	rec, err := l.Store.UpdateLaunch(ctx, cur.LaunchID, func(x *store.Launch) error {
		x.State, x.StackStatus, x.StatusMessage = store.LaunchUpdating, "", ""
		x.Template, x.Parameters = string(plan.Template), params
		x.Servers = mergeServers(x.Servers, plan.Servers)
		return nil
	})
	if err != nil {
		return cur, err
	}
	l.log().Info("updating launch", "app", rec.AppID, "launch", rec.LaunchID, "stack", rec.StackName)
	return l.sendUpdate(ctx, cloud, rec, prev)
}

func (l *Launcher) sendUpdate(ctx context.Context, cloud Cloud, rec store.Launch, prev store.LaunchState) (store.Launch, error) {
	err := cloud.UpdateStack(ctx, awstarget.StackInput{Name: cmp.Or(rec.StackID, rec.StackName), Template: rec.Template,
		Parameters: rec.Parameters, Tags: stackTags(rec)})
	switch {
	case errors.Is(err, awstarget.ErrNoUpdates):
		return l.Store.UpdateLaunch(ctx, rec.LaunchID, func(x *store.Launch) error {
			x.State, x.StatusMessage = store.LaunchLaunched, "nothing changed since the last launch"
			return nil
		})
	case err != nil && strings.Contains(err.Error(), "UPDATE_IN_PROGRESS"):
		// The update went out before a restart.
	case err != nil:
		out, uerr := l.Store.UpdateLaunch(ctx, rec.LaunchID, func(x *store.Launch) error {
			x.State, x.StatusMessage = prev, "the update was refused: "+err.Error()
			return nil
		})
		if uerr != nil {
			return rec, uerr
		}
		return out, invalid("update stack %s: %v", rec.StackName, err)
	}
	return l.Store.UpdateLaunch(ctx, rec.LaunchID, func(x *store.Launch) error {
		x.StackStatus = "UPDATE_IN_PROGRESS"
		return nil
	})
}

// mergeServers keeps what is known of servers still in the launch.
func mergeServers(old, next []store.LaunchedServer) []store.LaunchedServer {
	out := slices.Clone(next)
	for i := range out {
		for _, o := range old {
			if o.ServerID == out[i].ServerID && o.LogicalID == out[i].LogicalID {
				out[i] = o
				out[i].Group, out[i].Name = next[i].Group, next[i].Name
			}
		}
	}
	return out
}

// Terminate deletes the stack of the app's launch of kind, and with it its
// instances; the other kind's launch is not touched.
func (l *Launcher) Terminate(ctx context.Context, appID string, kind store.LaunchKind) (store.Launch, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur, err := l.live(ctx, appID, kind)
	if err != nil {
		return store.Launch{}, err
	}
	if cur == nil {
		return store.Launch{}, notReady("the app has no %s launch to terminate", kind)
	}
	if cur.State == store.LaunchTerminating && cur.StackStatus != "" {
		return *cur, nil
	}
	cloud, err := l.cloud(ctx)
	if err != nil {
		return *cur, err
	}
	rec, err := l.Store.UpdateLaunch(ctx, cur.LaunchID, func(x *store.Launch) error {
		x.State, x.StackStatus, x.StatusMessage = store.LaunchTerminating, "", ""
		return nil
	})
	if err != nil {
		return *cur, err
	}
	l.log().Info("terminating launch", "app", appID, "launch", rec.LaunchID, "kind", kind, "stack", rec.StackName)
	defer l.Wake()
	return l.delete(ctx, cloud, rec)
}

func (l *Launcher) delete(ctx context.Context, cloud Cloud, rec store.Launch) (store.Launch, error) {
	if err := cloud.DeleteStack(ctx, cmp.Or(rec.StackID, rec.StackName), rec.LaunchID+"-delete"); err != nil {
		return rec, err // stays TERMINATING unconfirmed: Run sends it again
	}
	return l.Store.UpdateLaunch(ctx, rec.LaunchID, func(x *store.Launch) error {
		if x.State == store.LaunchTerminating {
			x.StackStatus = "DELETE_IN_PROGRESS"
		}
		return nil
	})
}

// ChangeSet asks CloudFormation what a delta launch of the app's cutover
// would change, without changing anything.
func (l *Launcher) ChangeSet(ctx context.Context, appID string) (*Plan, awstarget.ChangeSet, error) {
	cloud, err := l.cloud(ctx)
	if err != nil {
		return nil, awstarget.ChangeSet{}, err
	}
	cur, err := l.live(ctx, appID, store.LaunchCutover)
	if err != nil {
		return nil, awstarget.ChangeSet{}, err
	}
	if cur == nil || cur.State != store.LaunchLaunched && cur.State != store.LaunchUpdateFailed {
		return nil, awstarget.ChangeSet{}, notReady("the app has no launched cutover to compare with: launch it first")
	}
	plan, err := Prepare(ctx, l.Store, cloud, appID)
	if err != nil {
		return nil, awstarget.ChangeSet{}, err
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	cs, err := cloud.CreateChangeSet(ctx, awstarget.StackInput{Name: cmp.Or(cur.StackID, cur.StackName), Template: string(plan.Template),
		Parameters: plan.Parameters(store.LaunchCutover, l.BootTimeout), Tags: stackTags(*cur)}, "rehost-"+hex.EncodeToString(b[:]))
	return plan, cs, err
}

// Run watches launches until ctx ends: every Poll while one is in progress
// or has servers whose boot is not settled, else every minute or when
// woken.
func (l *Launcher) Run(ctx context.Context) {
	for {
		busy, err := l.Reconcile(ctx)
		if err != nil && ctx.Err() == nil {
			l.log().Warn("watch launches", "err", err)
		}
		wait := time.Minute
		if busy {
			wait = cmp.Or(l.Poll, 5*time.Second)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-l.wakeChan():
		case <-t.C:
		}
		t.Stop()
	}
}

// Reconcile looks at every live launch once and moves it on; busy says
// whether any still needs watching.
func (l *Launcher) Reconcile(ctx context.Context) (busy bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	live, err := l.Store.LiveLaunches(ctx)
	if err != nil || len(live) == 0 {
		return false, err
	}
	cloud, err := l.cloud(ctx)
	if err != nil {
		return true, err
	}
	var errs []error
	for _, rec := range live {
		b, err := l.reconcile(ctx, cloud, rec)
		busy = busy || b
		if err != nil {
			errs = append(errs, fmt.Errorf("launch %s of app %s: %w", rec.LaunchID, rec.AppID, err))
		}
	}
	return busy, errors.Join(errs...)
}

func (l *Launcher) reconcile(ctx context.Context, cloud Cloud, rec store.Launch) (bool, error) {
	switch rec.State {
	case store.LaunchPending:
		_, err := l.create(ctx, cloud, rec)
		return true, err
	case store.LaunchUpdating:
		if rec.StackStatus == "" {
			_, err := l.sendUpdate(ctx, cloud, rec, store.LaunchLaunched)
			return true, err
		}
		return true, l.follow(ctx, cloud, rec)
	case store.LaunchCreating:
		return true, l.follow(ctx, cloud, rec)
	case store.LaunchLaunched, store.LaunchUpdateFailed:
		if settled(rec.Servers) {
			return false, nil
		}
		return true, l.follow(ctx, cloud, rec)
	case store.LaunchTerminating:
		return true, l.followDelete(ctx, cloud, rec)
	}
	return false, nil
}

// settled reports whether every server's verdict stands.
func settled(servers []store.LaunchedServer) bool {
	for _, s := range servers {
		if !s.Signalled || !Final(s.Boot) {
			return false
		}
	}
	return true
}

// errMoved: the launch changed under the watcher (a terminate came).
var errMoved = errors.New("the launch changed meanwhile")

// save writes what the watcher learnt, unless the launch moved on.
func (l *Launcher) save(ctx context.Context, seen store.Launch, fn func(*store.Launch)) error {
	_, err := l.Store.UpdateLaunch(ctx, seen.LaunchID, func(x *store.Launch) error {
		if x.State != seen.State {
			return errMoved
		}
		fn(x)
		return nil
	})
	if errors.Is(err, errMoved) {
		return nil
	}
	return err
}

// follow reads the stack, checks the boot of every instance it made so
// far, signals the verdicts and records where the launch is.
func (l *Launcher) follow(ctx context.Context, cloud Cloud, rec store.Launch) error {
	name := cmp.Or(rec.StackID, rec.StackName)
	st, err := cloud.DescribeStack(ctx, name)
	if err != nil {
		return err
	}
	if st == nil {
		return l.save(ctx, rec, func(x *store.Launch) {
			x.State, x.StatusMessage = store.LaunchTerminated, "the stack "+rec.StackName+" no longer exists"
		})
	}
	servers, err := l.checkBoots(ctx, cloud, rec, name)
	if err != nil {
		return err
	}
	state, msg := rec.State, ""
	switch st.Status {
	case "CREATE_COMPLETE", "UPDATE_COMPLETE":
		state = store.LaunchLaunched
	case "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "CREATE_FAILED", "DELETE_COMPLETE":
		state = store.LaunchFailed
	case "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_FAILED":
		state = store.LaunchUpdateFailed
	default:
		msg = progress(servers)
	}
	if state == store.LaunchFailed || state == store.LaunchUpdateFailed {
		evs, err := cloud.StackEvents(ctx, name)
		if err != nil {
			return err
		}
		msg = failure(evs, rec, servers, st)
	}
	if state != rec.State {
		l.log().Info("launch settled", "app", rec.AppID, "launch", rec.LaunchID, "state", state, "stack", st.Status, "message", msg)
	}
	return l.save(ctx, rec, func(x *store.Launch) {
		x.State, x.StackStatus, x.StackID, x.StatusMessage, x.Servers = state, st.Status, st.ID, msg, servers
		if state == store.LaunchLaunched && rec.State != store.LaunchLaunched {
			x.LaunchedAt = time.Now().UTC()
			for i := range x.Servers {
				s := &x.Servers[i]
				s.PrivateIP = cmp.Or(st.Outputs[s.LogicalID+"PrivateIp"], s.PrivateIP)
				s.PublicIP = cmp.Or(st.Outputs[s.LogicalID+"PublicIp"], s.PublicIP)
				s.InstanceID = cmp.Or(st.Outputs[s.LogicalID+"InstanceId"], s.InstanceID)
			}
		}
	})
}

// progress says which servers a launch in progress waits for.
func progress(servers []store.LaunchedServer) string {
	var parts []string
	for _, s := range servers {
		switch {
		case s.InstanceID == "":
		case s.Signalled:
		case s.Boot == Booted && s.Validation != nil && s.Validation.Status != "":
			parts = append(parts, s.Name+": validation "+s.Validation.Status)
		default:
			parts = append(parts, s.Name+": "+cmp.Or(s.Boot, "starting"))
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return "waiting for " + strings.Join(parts, ", ")
}

// failure is why a stack failed, from its events: the first resource that
// failed and CloudFormation's reason, naming the server it was.
func failure(evs []awstarget.StackEvent, rec store.Launch, servers []store.LaunchedServer, st *awstarget.Stack) string {
	for _, s := range servers {
		if s.Boot == FailedToBoot {
			return fmt.Sprintf("server %s (%s) failed to boot: %s", s.Name, s.InstanceID, s.BootDetail)
		}
		if s.Validation != nil && s.Validation.Status == ValidationFailed {
			return validationFailure(s)
		}
	}
	for _, e := range evs {
		if !strings.HasSuffix(e.Status, "_FAILED") || e.LogicalID == rec.StackName || e.Reason == "" ||
			strings.HasPrefix(e.Reason, "Resource creation cancelled") || strings.HasPrefix(e.Reason, "Resource update cancelled") {
			continue
		}
		what := "resource " + e.LogicalID
		for _, s := range servers {
			if s.LogicalID == e.LogicalID {
				what = fmt.Sprintf("server %s (%s)", s.Name, e.LogicalID)
			}
		}
		return fmt.Sprintf("%s: %s", what, e.Reason)
	}
	return cmp.Or(st.StatusReason, "the stack is "+st.Status)
}

// checkBoots runs the boot check on every instance of the stack whose
// verdict is not settled and signals the settled ones to their group.
func (l *Launcher) checkBoots(ctx context.Context, cloud Cloud, rec store.Launch, stack string) ([]store.LaunchedServer, error) {
	servers := slices.Clone(rec.Servers)
	for i := range servers {
		if v := servers[i].Validation; v != nil {
			c := *v
			servers[i].Validation = &c
		}
	}
	rs, err := cloud.StackResources(ctx, stack)
	if err != nil {
		return nil, err
	}
	instance, handle, ready := map[string]string{}, map[string]string{}, map[string]string{}
	for _, r := range rs {
		switch {
		case r.Type == "AWS::EC2::Instance" && r.PhysicalID != "" && !strings.HasPrefix(r.Status, "DELETE"):
			instance[r.LogicalID] = r.PhysicalID
		case r.Type == "AWS::CloudFormation::WaitConditionHandle":
			handle[r.LogicalID] = r.PhysicalID
		case r.Type == "AWS::CloudFormation::WaitCondition":
			ready[r.LogicalID] = r.Status
		}
	}
	var ids []string
	for i := range servers {
		s := &servers[i]
		id := instance[s.LogicalID]
		if id == "" {
			continue
		}
		if s.InstanceID != id { // a new instance (first seen, or replaced)
			s.InstanceID, s.Boot, s.BootDetail, s.Console, s.Signalled = id, "", "", nil, false
		}
		if !s.Signalled {
			ids = append(ids, id)
		}
	}
	statuses, err := cloud.InstanceStatuses(ctx, ids)
	if err != nil {
		return nil, err
	}
	for i := range servers {
		s := &servers[i]
		if s.InstanceID == "" {
			continue
		}
		if s.Signalled {
			continue
		}
		st := statuses[s.InstanceID]
		out, err := cloud.ConsoleOutput(ctx, s.InstanceID)
		if err != nil {
			return nil, err
		}
		v := CheckBoot(out, st)
		if v.State != s.Boot {
			l.log().Info("boot check", "app", rec.AppID, "launch", rec.LaunchID, "server", s.Name, "instance", s.InstanceID, "verdict", v.State, "detail", v.Detail)
		}
		s.Boot, s.BootDetail, s.Console, s.CheckedAt = v.State, v.Detail, v.Tail, time.Now().UTC()
		if !confirmed(v, st) {
			continue
		}
		if s.Boot == Booted && s.Validation != nil {
			done, err := l.validate(ctx, cloud, s)
			if err != nil {
				return nil, err
			}
			if !done {
				continue
			}
		}
		url, wc := handle[s.Group+"Handle"], ready[s.Group+"Ready"]
		if url != "" && (wc == "" || wc == "CREATE_IN_PROGRESS") {
			sig := awstarget.Signal{Status: "SUCCESS", Reason: "booted: " + s.BootDetail, UniqueID: s.LogicalID, Data: s.InstanceID}
			switch {
			case s.Boot == FailedToBoot:
				sig.Status, sig.Reason = "FAILURE", "server "+s.Name+" failed to boot: "+s.BootDetail
			case s.Validation != nil && s.Validation.Status == ValidationFailed:
				sig.Status, sig.Reason = "FAILURE", validationFailure(*s)
			}
			body, _ := json.Marshal(sig)
			if err := cloud.SignalWaitCondition(ctx, url, body); err != nil {
				return nil, fmt.Errorf("signal %s's group that it %s: %w", s.Name, s.Boot, err)
			}
		}
		s.Signalled = true
	}
	return servers, nil
}

// Validation statuses of a launched server's command.
const (
	ValidationRunning  = "running"
	ValidationWaiting  = "waiting for the SSM agent"
	ValidationPassed   = "passed"
	ValidationFailed   = "failed"
	ValidationNotRun   = "not run"
	defaultAgentGrace  = 3 * time.Minute
	validationTailSize = 6
)

// validate sends the server's validation command, or reads how it went;
// done once it passed, failed, or could not run (SSM does not manage the
// instance after AgentGrace).
func (l *Launcher) validate(ctx context.Context, cloud Cloud, s *store.LaunchedServer) (bool, error) {
	v := s.Validation
	switch v.Status {
	case ValidationPassed, ValidationFailed, ValidationNotRun:
		return true, nil
	}
	now := time.Now().UTC()
	if v.Since.IsZero() {
		v.Since = now
	}
	if v.CommandID == "" {
		id, err := cloud.RunCommand(ctx, s.InstanceID, v.Windows, v.Command)
		switch {
		case errors.Is(err, awstarget.ErrNoAgent) && now.Sub(v.Since) < cmp.Or(l.AgentGrace, defaultAgentGrace):
			v.Status = ValidationWaiting
			return false, nil
		case errors.Is(err, awstarget.ErrNoAgent):
			v.Status, v.Output = ValidationNotRun, err.Error()
			l.log().Warn("validation command not run", "server", s.Name, "instance", s.InstanceID, "err", err)
			return true, nil
		case err != nil:
			// SSM refused it (retried already if worth it): the command
			// cannot run as given.
			v.Status, v.ExitCode, v.Output = ValidationFailed, -1, err.Error()
			return true, nil
		}
		v.CommandID, v.Status = id, ValidationRunning
		return false, nil
	}
	r, err := cloud.CommandResult(ctx, v.CommandID, s.InstanceID)
	if err != nil || !r.Done {
		return false, err
	}
	v.ExitCode = r.ExitCode
	v.Output = strings.Join(lastLines(strings.TrimSpace(r.Stdout+"\n"+r.Stderr), validationTailSize), "\n")
	v.Status = ValidationFailed
	if r.Status == "Success" && r.ExitCode == 0 {
		v.Status = ValidationPassed
	}
	l.log().Info("validation command", "server", s.Name, "instance", s.InstanceID, "status", v.Status, "exitCode", v.ExitCode)
	return true, nil
}

func validationFailure(s store.LaunchedServer) string {
	v := s.Validation
	out := ""
	if lines := strings.Split(v.Output, "\n"); v.Output != "" {
		out = ": " + lines[len(lines)-1]
	}
	return fmt.Sprintf("server %s failed its validation: %q exited %d%s", s.Name, v.Command, v.ExitCode, out)
}

// confirmed reports whether a verdict stands: a boot at once; a failure
// once the status checks settled too (until then the console may still
// add the lines that explain it).
func confirmed(v Verdict, st awstarget.InstanceStatus) bool {
	switch v.State {
	case Booted:
		return true
	case FailedToBoot:
		return st.Instance == "impaired" || st.State == "terminated" || st.State == "shutting-down" || st.State == "stopped"
	}
	return false
}

// followDelete finishes a termination: the stack gone means TERMINATED.
func (l *Launcher) followDelete(ctx context.Context, cloud Cloud, rec store.Launch) error {
	st, err := cloud.DescribeStack(ctx, cmp.Or(rec.StackID, rec.StackName))
	if err != nil {
		return err
	}
	switch {
	case st == nil || st.Status == "DELETE_COMPLETE":
		l.log().Info("launch terminated", "app", rec.AppID, "launch", rec.LaunchID, "stack", rec.StackName)
		return l.save(ctx, rec, func(x *store.Launch) {
			x.State, x.StackStatus, x.StatusMessage = store.LaunchTerminated, "DELETE_COMPLETE", ""
		})
	case st.Status == "DELETE_FAILED":
		evs, err := cloud.StackEvents(ctx, st.ID)
		if err != nil {
			return err
		}
		return l.save(ctx, rec, func(x *store.Launch) {
			x.State, x.StackStatus, x.StatusMessage = store.LaunchTerminateFailed, st.Status, failure(evs, rec, nil, st)
		})
	case rec.StackStatus == "" || st.Status != "DELETE_IN_PROGRESS":
		// The delete was not confirmed before a restart, or the stack was
		// still being created when it was asked.
		_, err := l.delete(ctx, cloud, rec)
		return err
	}
	return nil
}
