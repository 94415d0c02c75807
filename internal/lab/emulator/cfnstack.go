package emulator

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// The stack engine. A stack operation (create, update, delete, and the
// rollbacks) is a state machine stepped by a worker about every 50 ms: a
// resource starts when every resource it depends on is complete, several
// at once where nothing orders them, as CloudFormation does; deletion runs
// in the reverse order. A failed resource fails the operation: the stack
// rolls back (ROLLBACK_COMPLETE, with the failing resource's reason in its
// events; UPDATE_ROLLBACK_COMPLETE for an update, whose replacements are
// made before the old resources are removed so that a rollback only deletes
// what the update made). Everything is in state.json, so a restarted
// emulator resumes the operations it was running.

// Stack is a CloudFormation stack.
type Stack struct {
	ID              string                    `json:"id"`
	Name            string                    `json:"name"`
	Status          string                    `json:"status"`
	StatusReason    string                    `json:"statusReason,omitempty"`
	Description     string                    `json:"description,omitempty"`
	Template        string                    `json:"template"`
	Parameters      map[string]string         `json:"parameters,omitempty"` // resolved
	Tags            []Tag                     `json:"tags,omitempty"`
	ClientToken     string                    `json:"clientToken,omitempty"`
	DisableRollback bool                      `json:"disableRollback,omitempty"`
	Resources       map[string]*StackResource `json:"resources"`
	Events          []StackEvent              `json:"events"`
	Outputs         []StackOutput             `json:"outputs,omitempty"`
	Created         time.Time                 `json:"created"`
	Updated         time.Time                 `json:"updated,omitzero"`
	Deleted         time.Time                 `json:"deleted,omitzero"`
	// Op counts the stack's operations; a resource whose Op is the stack's
	// has been handled by the current one.
	Op int `json:"op"`
	// Prev is what an update rolls back to.
	Prev *stackVersion `json:"prev,omitempty"`
	// Cleanup holds physical resources to delete once an update settled:
	// the ones it replaced or removed, or (rolling back) the ones it made.
	Cleanup    []*StackResource `json:"cleanup,omitempty"`
	ChangeSets []*ChangeSet     `json:"changeSets,omitempty"`
}

// StackResource is one resource of a stack.
type StackResource struct {
	LogicalID  string            `json:"logicalId"`
	Type       string            `json:"type"`
	PhysicalID string            `json:"physicalId,omitempty"`
	Status     string            `json:"status"`
	Reason     string            `json:"reason,omitempty"`
	Updated    time.Time         `json:"updated"`
	Started    time.Time         `json:"started"`
	Attrs      map[string]string `json:"attrs,omitempty"`
	// Props are the resolved properties it was made with (JSON).
	Props string `json:"props,omitempty"`
	Op    int    `json:"op"`
	// Launching: an instance launch is under way outside the lock.
	Launching bool `json:"-"`
}

type stackVersion struct {
	Template    string                    `json:"template"`
	Description string                    `json:"description,omitempty"`
	Parameters  map[string]string         `json:"parameters,omitempty"`
	Resources   map[string]*StackResource `json:"resources"`
	Outputs     []StackOutput             `json:"outputs,omitempty"`
}

// StackEvent is one line of a stack's history.
type StackEvent struct {
	ID          string    `json:"id"`
	LogicalID   string    `json:"logicalId"`
	PhysicalID  string    `json:"physicalId,omitempty"`
	Type        string    `json:"type"`
	Status      string    `json:"status"`
	Reason      string    `json:"reason,omitempty"`
	Time        time.Time `json:"time"`
	ClientToken string    `json:"clientToken,omitempty"`
}

// StackOutput is an output of a complete stack.
type StackOutput struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	Description string `json:"description,omitempty"`
}

// WaitHandle collects the signals sent to a wait condition handle's URL.
type WaitHandle struct {
	StackID   string   `json:"stackId"`
	LogicalID string   `json:"logicalId"`
	Signals   []Signal `json:"signals,omitempty"`
}

// Signal is what a signaller PUTs to a wait condition handle.
type Signal struct {
	Status   string `json:"Status"`
	Reason   string `json:"Reason"`
	UniqueID string `json:"UniqueId"`
	Data     string `json:"Data"`
}

const stackType = "AWS::CloudFormation::Stack"

// terminal stack states: nothing runs.
func stackSettled(status string) bool {
	return !strings.HasSuffix(status, "_IN_PROGRESS")
}

var templates sync.Map // sha256 of a body → *template

func cachedTemplate(body string) (*template, error) {
	key := sha256.Sum256([]byte(body))
	if t, ok := templates.Load(key); ok {
		return t.(*template), nil
	}
	t, err := parseTemplate(body)
	if err != nil {
		return nil, err
	}
	templates.Store(key, t)
	return t, nil
}

func (e *Emulator) eventLocked(st *Stack, logical, physical, typ, status, reason string) {
	st.Events = append(st.Events, StackEvent{ID: logical + "-" + status + "-" + randomHex(8), LogicalID: logical,
		PhysicalID: physical, Type: typ, Status: status, Reason: reason, Time: e.clock.Now().UTC(), ClientToken: st.ClientToken})
}

func (e *Emulator) stackStatusLocked(st *Stack, status, reason string) {
	st.Status, st.StatusReason = status, reason
	e.eventLocked(st, st.Name, st.ID, stackType, status, reason)
}

func (e *Emulator) resourceStatusLocked(st *Stack, r *StackResource, status, reason string) {
	r.Status, r.Reason, r.Updated = status, reason, e.clock.Now().UTC()
	e.eventLocked(st, r.LogicalID, r.PhysicalID, r.Type, status, reason)
}

// startStackWorkerLocked runs the stack's current operation to its end.
func (e *Emulator) startStackWorkerLocked(st *Stack) {
	if e.closed || e.stackWorkers[st.ID] {
		return
	}
	e.stackWorkers[st.ID] = true
	id := st.ID
	e.wg.Go(func() {
		defer func() {
			e.mu.Lock()
			delete(e.stackWorkers, id)
			e.mu.Unlock()
		}()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			e.mu.Lock()
			st := e.st.Stacks[id]
			var work []func()
			done := st == nil || e.closed
			if !done {
				work = e.stepStackLocked(st)
				done = stackSettled(st.Status) && len(work) == 0
				e.saveLocked()
			}
			e.mu.Unlock()
			for _, w := range work {
				w()
			}
			if done {
				return
			}
			select {
			case <-e.stop:
				return
			case <-tick.C:
			}
		}
	})
}

// stepStackLocked advances the operation; it returns work to run outside
// the lock (instance launches read the boot volume).
func (e *Emulator) stepStackLocked(st *Stack) []func() {
	tpl, err := cachedTemplate(st.Template)
	if err != nil {
		// A stored template always parsed once; fail rather than spin.
		e.stackStatusLocked(st, "ROLLBACK_FAILED", "the stored template no longer parses: "+err.Error())
		return nil
	}
	switch st.Status {
	case "CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS":
		return e.forwardLocked(st, tpl)
	case "ROLLBACK_IN_PROGRESS", "DELETE_IN_PROGRESS":
		if e.deleteResourcesLocked(st, tpl) {
			if st.Status == "ROLLBACK_IN_PROGRESS" {
				e.stackStatusLocked(st, "ROLLBACK_COMPLETE", "")
			} else {
				st.Deleted = e.clock.Now().UTC()
				e.stackStatusLocked(st, "DELETE_COMPLETE", "")
			}
		}
	case "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS":
		if e.cleanupLocked(st) {
			st.Prev = nil
			e.stackStatusLocked(st, strings.TrimSuffix(st.Status, "_CLEANUP_IN_PROGRESS"), "")
		}
	case "UPDATE_ROLLBACK_IN_PROGRESS":
		e.rollbackUpdateLocked(st)
	}
	return nil
}

func (e *Emulator) evaluatorLocked(st *Stack, tpl *template) (*evaluator, error) {
	params := map[string]paramValue{}
	for name, p := range tpl.Parameters {
		v := st.Parameters[name]
		pv := paramValue{s: v}
		if strings.HasPrefix(p.Type, "List<") || p.Type == "CommaDelimitedList" {
			pv.isL = true
			if v != "" {
				pv.list = strings.Split(v, ",")
			}
		}
		params[name] = pv
	}
	ev := &evaluator{t: tpl, params: params, conds: map[string]bool{}, azs: []string{e.cfg.Region + "a", e.cfg.Region + "b"},
		pseudo: map[string]any{"AWS::AccountId": e.cfg.AccountID, "AWS::Region": e.cfg.Region, "AWS::StackId": st.ID,
			"AWS::StackName": st.Name, "AWS::Partition": "aws", "AWS::URLSuffix": "amazonaws.com", "AWS::NotificationARNs": []any{}},
		resource: func(name string) (string, map[string]string, bool) {
			r := st.Resources[name]
			if r == nil || !strings.HasSuffix(r.Status, "_COMPLETE") || strings.HasPrefix(r.Status, "DELETE") {
				return "", nil, false
			}
			return r.PhysicalID, r.Attrs, true
		}}
	for name := range tpl.Conditions {
		if _, err := ev.condition(name); err != nil {
			return nil, err
		}
	}
	return ev, nil
}

// wanted reports whether the template makes the resource (its condition
// holds).
func wanted(ev *evaluator, r tplResource) bool {
	if r.Condition == "" {
		return true
	}
	b, _ := ev.condition(r.Condition)
	return b
}

// forwardLocked creates (or, in an update, changes) the resources in
// dependency order.
func (e *Emulator) forwardLocked(st *Stack, tpl *template) []func() {
	ev, err := e.evaluatorLocked(st, tpl)
	if err != nil {
		e.failOperationLocked(st, nil, err.Error())
		return nil
	}
	var work []func()
	var failed []string
	pending := false
	for _, name := range tpl.order() {
		r := tpl.Resources[name]
		if !wanted(ev, r) {
			continue
		}
		sr := st.Resources[name]
		if sr != nil && sr.Op == st.Op {
			switch {
			case strings.HasSuffix(sr.Status, "_FAILED"):
				failed = append(failed, name)
			case strings.HasSuffix(sr.Status, "_IN_PROGRESS"):
				pending = true
				if sr.Type == "AWS::EC2::Instance" && sr.PhysicalID == "" && !sr.Launching {
					// Restarted with a launch unrecorded: its client
					// token finds the instance if it was made.
					if w := e.relaunchLocked(st, sr); w != nil {
						work = append(work, w)
					}
				} else if !sr.Launching {
					e.pollResourceLocked(st, sr, ev)
					if strings.HasSuffix(sr.Status, "_FAILED") {
						failed = append(failed, name)
					}
				}
			}
			continue
		}
		ready := true
		for _, d := range tpl.deps[name] {
			dr := st.Resources[d]
			if !wanted(ev, tpl.Resources[d]) {
				continue
			}
			if dr == nil || dr.Op != st.Op || !strings.HasSuffix(dr.Status, "_COMPLETE") {
				ready = false
			}
		}
		pending = true
		if !ready {
			continue
		}
		if w := e.startResourceLocked(st, tpl, ev, name); w != nil {
			work = append(work, w)
		}
		if sr := st.Resources[name]; strings.HasSuffix(sr.Status, "_FAILED") {
			failed = append(failed, name)
		}
	}
	if len(failed) > 0 {
		e.failOperationLocked(st, failed, "")
		return work
	}
	if pending || len(work) > 0 {
		return work
	}
	outs, err := e.outputsLocked(st, tpl, ev)
	if err != nil {
		e.failOperationLocked(st, nil, err.Error())
		return nil
	}
	st.Outputs = outs
	if st.Status == "CREATE_IN_PROGRESS" {
		e.stackStatusLocked(st, "CREATE_COMPLETE", "")
		return nil
	}
	// The update is in place: what it replaced or removed goes now.
	for name, old := range st.Prev.Resources {
		cur := st.Resources[name]
		r, inTpl := tpl.Resources[name]
		keep := inTpl && wanted(ev, r) && cur != nil && cur.Op == st.Op
		if !keep || cur.PhysicalID != old.PhysicalID {
			c := *old
			st.Cleanup = append(st.Cleanup, &c)
		}
		if !keep {
			delete(st.Resources, name)
		}
	}
	e.stackStatusLocked(st, "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "")
	return nil
}

// failOperationLocked ends a create or update that failed: resources still
// in progress are cancelled and the stack rolls back.
func (e *Emulator) failOperationLocked(st *Stack, failed []string, reason string) {
	verb := "create"
	if st.Status == "UPDATE_IN_PROGRESS" {
		verb = "update"
	}
	for _, name := range slices.Sorted(maps.Keys(st.Resources)) {
		r := st.Resources[name]
		if r.Op == st.Op && strings.HasSuffix(r.Status, "_IN_PROGRESS") {
			e.resourceStatusLocked(st, r, strings.TrimSuffix(r.Status, "_IN_PROGRESS")+"_FAILED", "Resource "+verb+" cancelled")
		}
	}
	if reason == "" {
		slices.Sort(failed)
		reason = fmt.Sprintf("The following resource(s) failed to %s: [%s]. ", verb, strings.Join(failed, ", "))
	}
	switch {
	case verb == "update":
		e.stackStatusLocked(st, "UPDATE_ROLLBACK_IN_PROGRESS", reason)
	case st.DisableRollback:
		e.stackStatusLocked(st, "CREATE_FAILED", reason)
	default:
		e.stackStatusLocked(st, "ROLLBACK_IN_PROGRESS", reason+"Rollback requested by user.")
	}
}

func (e *Emulator) outputsLocked(st *Stack, tpl *template, ev *evaluator) ([]StackOutput, error) {
	var out []StackOutput
	for _, k := range slices.Sorted(maps.Keys(tpl.Outputs)) {
		o := tpl.Outputs[k]
		if o.Condition != "" {
			if ok, _ := ev.condition(o.Condition); !ok {
				continue
			}
		}
		v, err := ev.eval(o.Value)
		if err != nil {
			return nil, fmt.Errorf("output %s: %v", k, err)
		}
		s := scalarString(v)
		if l, ok := v.([]any); ok {
			parts := make([]string, len(l))
			for i, x := range l {
				parts[i] = scalarString(x)
			}
			s = strings.Join(parts, ",")
		}
		out = append(out, StackOutput{Key: k, Value: s, Description: o.Description})
	}
	return out, nil
}

// startResourceLocked begins creating (or updating) one resource.
func (e *Emulator) startResourceLocked(st *Stack, tpl *template, ev *evaluator, name string) func() {
	r := tpl.Resources[name]
	props, err := ev.eval(r.Properties)
	propsJSON := ""
	if err == nil {
		b, _ := json.Marshal(props)
		propsJSON = string(b)
	}
	old := st.Resources[name]
	now := e.clock.Now().UTC()
	if old != nil && st.Status == "UPDATE_IN_PROGRESS" && old.Type == r.Type && err == nil {
		if old.Props == propsJSON {
			old.Op = st.Op // unchanged
			return nil
		}
		if !needsReplacement(r.Type, old.Props, propsJSON) {
			old.Op, old.Props, old.Started = st.Op, propsJSON, now
			e.resourceStatusLocked(st, old, "UPDATE_IN_PROGRESS", "")
			if err := e.updateInPlaceLocked(st, old, props); err != nil {
				e.resourceStatusLocked(st, old, "UPDATE_FAILED", err.Error())
			} else {
				e.resourceStatusLocked(st, old, "UPDATE_COMPLETE", "")
			}
			return nil
		}
	}
	sr := &StackResource{LogicalID: name, Type: r.Type, Op: st.Op, Started: now, Props: propsJSON}
	st.Resources[name] = sr
	inProgress, reason := "CREATE_IN_PROGRESS", ""
	if old != nil && st.Status == "UPDATE_IN_PROGRESS" {
		inProgress, reason = "UPDATE_IN_PROGRESS", "Requested update requires the creation of a new physical resource; hence creating one."
		sr.PhysicalID = old.PhysicalID
	}
	e.resourceStatusLocked(st, sr, inProgress, reason)
	sr.PhysicalID = ""
	failStatus := strings.Replace(inProgress, "IN_PROGRESS", "FAILED", 1)
	if err != nil {
		e.resourceStatusLocked(st, sr, failStatus, err.Error())
		return nil
	}
	m, _ := props.(map[string]any)
	switch r.Type {
	case "AWS::CloudFormation::WaitConditionHandle":
		token := randomHex(20)
		e.st.Handles[token] = &WaitHandle{StackID: st.ID, LogicalID: name}
		sr.PhysicalID = e.baseURL() + "/cfn-signal/" + token
		e.resourceStatusLocked(st, sr, strings.Replace(inProgress, "IN_PROGRESS", "COMPLETE", 1), "")
	case "AWS::CloudFormation::WaitCondition":
		if err := checkWaitCondition(m); err != nil {
			e.resourceStatusLocked(st, sr, failStatus, err.Error())
		}
	case "AWS::EC2::Instance":
		spec, err := instanceSpecOf(m)
		if err != nil {
			e.resourceStatusLocked(st, sr, failStatus, err.Error())
			return nil
		}
		return e.launchWorkLocked(st, sr, spec)
	default:
		e.resourceStatusLocked(st, sr, failStatus, fmt.Sprintf("the emulator does not create resources of type %s", r.Type))
	}
	return nil
}

// launchWorkLocked returns the launch of a stack's instance, run outside
// the lock; its client token makes a repeated launch find the first.
func (e *Emulator) launchWorkLocked(st *Stack, sr *StackResource, spec instanceSpec) func() {
	spec.Tags = append(append(slices.Clone(st.Tags), Tag{"aws:cloudformation:stack-name", st.Name},
		Tag{"aws:cloudformation:stack-id", st.ID}, Tag{"aws:cloudformation:logical-id", sr.LogicalID}), spec.Tags...)
	spec.ClientToken = fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d", st.ID, sr.LogicalID, st.Op))))[:32]
	sr.Launching = true
	stackID, inProgress := st.ID, sr.Status
	return func() {
		ins, err := e.launch(spec)
		e.mu.Lock()
		defer e.mu.Unlock()
		st := e.st.Stacks[stackID]
		if st == nil || st.Resources[sr.LogicalID] != sr || sr.Status != inProgress {
			if err == nil {
				e.terminateLocked(ins[0]) // the operation moved on without it
			}
			sr.Launching = false
			return
		}
		sr.Launching = false
		if err != nil {
			e.resourceStatusLocked(st, sr, strings.Replace(inProgress, "IN_PROGRESS", "FAILED", 1), ec2Reason(err))
			return
		}
		sr.PhysicalID = ins[0].ID
		e.saveLocked()
	}
}

func (e *Emulator) relaunchLocked(st *Stack, sr *StackResource) func() {
	var m map[string]any
	json.Unmarshal([]byte(sr.Props), &m)
	spec, err := instanceSpecOf(m)
	if err != nil {
		e.resourceStatusLocked(st, sr, strings.Replace(sr.Status, "IN_PROGRESS", "FAILED", 1), err.Error())
		return nil
	}
	return e.launchWorkLocked(st, sr, spec)
}

// ec2Reason words an EC2 error as CloudFormation reports it in an event.
func ec2Reason(err error) string {
	if ae, ok := err.(*apiError); ok {
		return fmt.Sprintf("%s (Service: AmazonEC2; Status Code: %d; Error Code: %s; Request ID: %s)", ae.Message, ae.Status, ae.Code, requestID())
	}
	return err.Error()
}

// needsReplacement: any change of an instance's properties other than its
// tags replaces it, as do changes to wait conditions and their handles.
func needsReplacement(typ, oldJSON, newJSON string) bool {
	if typ != "AWS::EC2::Instance" {
		return true
	}
	var a, b map[string]any
	json.Unmarshal([]byte(oldJSON), &a)
	json.Unmarshal([]byte(newJSON), &b)
	delete(a, "Tags")
	delete(b, "Tags")
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) != string(y)
}

// updateInPlaceLocked changes what can change without a replacement: an
// instance's own tags.
func (e *Emulator) updateInPlaceLocked(st *Stack, sr *StackResource, props any) error {
	in := e.st.Instances[sr.PhysicalID]
	if in == nil {
		return fmt.Errorf("instance %s no longer exists", sr.PhysicalID)
	}
	spec, err := instanceSpecOf(props.(map[string]any))
	if err != nil {
		return err
	}
	keep := slices.DeleteFunc(slices.Clone(in.Tags), func(t Tag) bool { return !strings.HasPrefix(t.Key, "aws:") })
	in.Tags = setTags(append(keep, st.Tags...), spec.Tags)
	return nil
}

func checkWaitCondition(m map[string]any) error {
	for k := range m {
		if k != "Handle" && k != "Timeout" && k != "Count" {
			return fmt.Errorf("Encountered unsupported property %s", k)
		}
	}
	if _, ok := m["Handle"].(string); !ok {
		return fmt.Errorf("Property Handle cannot be empty.")
	}
	to, err := waitTimeout(m)
	if err != nil {
		return err
	}
	if to <= 0 || to > 43200*time.Second {
		return fmt.Errorf("Timeout must be between 1 and 43200 seconds")
	}
	return nil
}

func waitTimeout(m map[string]any) (time.Duration, error) {
	var secs float64
	if _, err := fmt.Sscanf(scalarString(m["Timeout"]), "%g", &secs); err != nil {
		return 0, fmt.Errorf("Property Timeout must be a number of seconds")
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// pollResourceLocked moves a resource in progress on: an instance once it
// runs, a wait condition once its signals came (or its time ran out).
func (e *Emulator) pollResourceLocked(st *Stack, sr *StackResource, ev *evaluator) {
	complete := strings.Replace(sr.Status, "IN_PROGRESS", "COMPLETE", 1)
	failed := strings.Replace(sr.Status, "IN_PROGRESS", "FAILED", 1)
	switch sr.Type {
	case "AWS::EC2::Instance":
		in := e.st.Instances[sr.PhysicalID]
		if in == nil {
			return // launched on the next step after a restart (client token)
		}
		switch e.instanceStateLocked(in) {
		case "running":
			sr.Attrs = map[string]string{"PrivateIp": in.PrivateIP, "AvailabilityZone": in.AvailabilityZone,
				"PrivateDnsName": hostName(in.PrivateIP) + "." + e.cfg.Region + ".compute.internal"}
			if in.PublicIP != "" {
				sr.Attrs["PublicIp"] = in.PublicIP
				sr.Attrs["PublicDnsName"] = "ec2-" + strings.ReplaceAll(in.PublicIP, ".", "-") + ".compute-1.amazonaws.com"
			}
			e.resourceStatusLocked(st, sr, complete, "")
		case "shutting-down", "terminated":
			e.resourceStatusLocked(st, sr, failed, "Instance "+in.ID+" was terminated while it was being created")
		}
	case "AWS::CloudFormation::WaitCondition":
		var m map[string]any
		json.Unmarshal([]byte(sr.Props), &m)
		url, _ := m["Handle"].(string)
		_, token, _ := strings.Cut(url, "/cfn-signal/")
		h := e.st.Handles[token]
		if h == nil {
			e.resourceStatusLocked(st, sr, failed, "the wait condition's handle "+url+" is not a wait condition handle of this account")
			return
		}
		count := 1
		if c := scalarString(m["Count"]); c != "" {
			fmt.Sscanf(c, "%d", &count)
		}
		data := map[string]string{}
		for _, s := range h.Signals {
			if s.Status == "FAILURE" {
				e.resourceStatusLocked(st, sr, failed, fmt.Sprintf("WaitCondition received failed message: '%s' for uniqueId: %s", s.Reason, s.UniqueID))
				return
			}
			data[s.UniqueID] = s.Data
		}
		if len(data) >= count {
			b, _ := json.Marshal(data)
			sr.Attrs = map[string]string{"Data": string(b)}
			e.resourceStatusLocked(st, sr, complete, "")
			return
		}
		to, _ := waitTimeout(m)
		if e.clock.Now().Sub(sr.Started) >= to {
			e.resourceStatusLocked(st, sr, failed, fmt.Sprintf("WaitCondition timed out. Received %d conditions when expecting %d", len(data), count))
		}
	}
}

// deleteResourcesLocked deletes every resource, dependents first; true
// when none is left.
func (e *Emulator) deleteResourcesLocked(st *Stack, tpl *template) bool {
	left := false
	for _, name := range slices.Backward(tpl.order()) {
		sr := st.Resources[name]
		if sr == nil || sr.Status == "DELETE_COMPLETE" {
			continue
		}
		left = true
		if sr.Launching {
			continue
		}
		if sr.Status == "DELETE_IN_PROGRESS" {
			if e.physicalGoneLocked(sr) {
				e.resourceStatusLocked(st, sr, "DELETE_COMPLETE", "")
			}
			continue
		}
		blocked := false
		for other, deps := range tpl.deps {
			if o := st.Resources[other]; o != nil && o.Status != "DELETE_COMPLETE" && slices.Contains(deps, name) {
				blocked = true
			}
		}
		if blocked {
			continue
		}
		if sr.PhysicalID == "" {
			e.resourceStatusLocked(st, sr, "DELETE_COMPLETE", "")
			continue
		}
		e.resourceStatusLocked(st, sr, "DELETE_IN_PROGRESS", "")
		e.deletePhysicalLocked(sr)
	}
	// Resources of an earlier template (a stack deleted after an update
	// that removed them from the template but before cleanup).
	for _, name := range slices.Sorted(maps.Keys(st.Resources)) {
		if _, ok := tpl.Resources[name]; ok {
			continue
		}
		sr := st.Resources[name]
		if sr.Status == "DELETE_COMPLETE" {
			continue
		}
		left = true
		if sr.Status != "DELETE_IN_PROGRESS" {
			e.resourceStatusLocked(st, sr, "DELETE_IN_PROGRESS", "")
			e.deletePhysicalLocked(sr)
		} else if e.physicalGoneLocked(sr) {
			e.resourceStatusLocked(st, sr, "DELETE_COMPLETE", "")
		}
	}
	if !left && len(st.Cleanup) > 0 {
		return e.cleanupLocked(st)
	}
	return !left
}

func (e *Emulator) deletePhysicalLocked(sr *StackResource) {
	switch sr.Type {
	case "AWS::EC2::Instance":
		if in := e.st.Instances[sr.PhysicalID]; in != nil {
			e.terminateLocked(in)
		}
	case "AWS::CloudFormation::WaitConditionHandle":
		_, token, _ := strings.Cut(sr.PhysicalID, "/cfn-signal/")
		delete(e.st.Handles, token)
	}
}

func (e *Emulator) physicalGoneLocked(sr *StackResource) bool {
	if sr.Type == "AWS::EC2::Instance" {
		in := e.st.Instances[sr.PhysicalID]
		return in == nil || e.instanceStateLocked(in) == "terminated"
	}
	return true
}

// cleanupLocked deletes the physical resources in st.Cleanup; true when
// they are all gone.
func (e *Emulator) cleanupLocked(st *Stack) bool {
	var left []*StackResource
	for _, sr := range st.Cleanup {
		switch sr.Status {
		case "DELETE_IN_PROGRESS":
			if e.physicalGoneLocked(sr) {
				e.resourceStatusLocked(st, sr, "DELETE_COMPLETE", "")
				continue
			}
		default:
			if sr.PhysicalID == "" {
				continue
			}
			e.resourceStatusLocked(st, sr, "DELETE_IN_PROGRESS", "")
			e.deletePhysicalLocked(sr)
		}
		left = append(left, sr)
	}
	st.Cleanup = left
	return len(left) == 0
}

// rollbackUpdateLocked puts the previous resources back and schedules what
// the update made for deletion.
func (e *Emulator) rollbackUpdateLocked(st *Stack) {
	for _, sr := range st.Resources {
		if sr.Launching {
			return // a launch in flight: wait for its instance to be known
		}
	}
	prev := st.Prev
	for name, cur := range st.Resources {
		old := prev.Resources[name]
		if old == nil || cur.PhysicalID != old.PhysicalID {
			if cur.PhysicalID != "" {
				c := *cur
				st.Cleanup = append(st.Cleanup, &c)
			}
		}
	}
	st.Op++
	for name, old := range prev.Resources {
		r := *old
		r.Op = st.Op
		st.Resources[name] = &r
		if cur := e.st.Instances[r.PhysicalID]; cur != nil && r.Type == "AWS::EC2::Instance" {
			var m map[string]any
			json.Unmarshal([]byte(r.Props), &m)
			_ = e.updateInPlaceLocked(st, &r, m)
		}
		e.resourceStatusLocked(st, &r, "UPDATE_COMPLETE", "")
	}
	for name := range st.Resources {
		if _, ok := prev.Resources[name]; !ok {
			delete(st.Resources, name)
		}
	}
	st.Template, st.Description, st.Parameters, st.Outputs = prev.Template, prev.Description, prev.Parameters, prev.Outputs
	e.stackStatusLocked(st, "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", "")
}

// signal records a signal sent to a wait condition handle's URL.
func (e *Emulator) signal(token string, s Signal) error {
	if s.Status != "SUCCESS" && s.Status != "FAILURE" {
		return fmt.Errorf("Status must be SUCCESS or FAILURE, not %q", s.Status)
	}
	if s.UniqueID == "" {
		return fmt.Errorf("UniqueId is required")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.st.Handles[token]
	if h == nil {
		return errNoHandle
	}
	i := slices.IndexFunc(h.Signals, func(x Signal) bool { return x.UniqueID == s.UniqueID })
	if i >= 0 {
		h.Signals[i] = s
	} else {
		h.Signals = append(h.Signals, s)
	}
	e.saveLocked()
	return nil
}

var errNoHandle = fmt.Errorf("no such wait condition handle")

// Stacks returns copies of every stack (deleted ones too), by name and id.
func (e *Emulator) Stacks() []Stack {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Stack
	for _, st := range e.st.Stacks {
		c := *st
		c.Resources = map[string]*StackResource{}
		for k, r := range st.Resources {
			rc := *r
			c.Resources[k] = &rc
		}
		c.Events = slices.Clone(st.Events)
		c.Outputs = slices.Clone(st.Outputs)
		c.Tags = slices.Clone(st.Tags)
		c.Prev, c.Cleanup, c.ChangeSets = nil, nil, nil
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b Stack) int { return strings.Compare(a.Name+a.ID, b.Name+b.ID) })
	return out
}
