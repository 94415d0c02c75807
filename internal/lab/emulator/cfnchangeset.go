package emulator

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// Change sets: what an update (or a create) would do, worked out before it
// is executed. Changes are found by resolving each resource's properties
// with the new template and parameters and the old, references to other
// resources standing in as placeholders: a differing resource is a Modify
// (Replacement True for an instance unless only its tags differ), one whose
// properties refer to a replaced resource is a Modify with Replacement
// Conditional.

// ChangeSet is a proposed change of a stack.
type ChangeSet struct {
	ID              string            `json:"id"`
	Name            string            `json:"name"`
	StackID         string            `json:"stackId"`
	Type            string            `json:"type"` // CREATE or UPDATE
	Status          string            `json:"status"`
	StatusReason    string            `json:"statusReason,omitempty"`
	ExecutionStatus string            `json:"executionStatus"`
	Description     string            `json:"description,omitempty"`
	Template        string            `json:"template"`
	Parameters      map[string]string `json:"parameters,omitempty"`
	Tags            []Tag             `json:"tags,omitempty"`
	Changes         []ResourceChange  `json:"changes,omitempty"`
	Created         time.Time         `json:"created"`
}

// ResourceChange is one change of a change set.
type ResourceChange struct {
	Action      string   `json:"action"` // Add, Modify, Remove
	LogicalID   string   `json:"logicalId"`
	PhysicalID  string   `json:"physicalId,omitempty"`
	Type        string   `json:"type"`
	Replacement string   `json:"replacement,omitempty"` // True, False, Conditional
	Scope       []string `json:"scope,omitempty"`
}

// attributes each type offers to Fn::GetAtt.
var attributes = map[string][]string{
	"AWS::EC2::Instance":                       {"AvailabilityZone", "PrivateDnsName", "PrivateIp", "PublicDnsName", "PublicIp"},
	"AWS::CloudFormation::WaitCondition":       {"Data"},
	"AWS::CloudFormation::WaitConditionHandle": nil,
}

// staticProps resolves every resource's properties with placeholders for
// what only exists once made.
func (e *Emulator) staticProps(st *Stack, tpl *template, vals map[string]string) (map[string]string, error) {
	probe := &Stack{ID: st.ID, Name: st.Name, Parameters: vals, Resources: map[string]*StackResource{}}
	for name, r := range tpl.Resources {
		attrs := map[string]string{}
		for _, a := range attributes[r.Type] {
			attrs[a] = "{{" + name + "." + a + "}}"
		}
		probe.Resources[name] = &StackResource{LogicalID: name, PhysicalID: "{{" + name + "}}", Status: "CREATE_COMPLETE", Attrs: attrs}
	}
	ev, err := e.evaluatorLocked(probe, tpl)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for name, r := range tpl.Resources {
		if !wanted(ev, r) {
			continue
		}
		v, err := ev.eval(r.Properties)
		if err != nil {
			return nil, fmt.Errorf("resource %s: %v", name, err)
		}
		b, _ := json.Marshal(v)
		out[name] = string(b)
	}
	return out, nil
}

func (e *Emulator) changesLocked(st *Stack, tpl *template, vals map[string]string) ([]ResourceChange, error) {
	next, err := e.staticProps(st, tpl, vals)
	if err != nil {
		return nil, validationError("%v", err)
	}
	var changes []ResourceChange
	if st.Status == "REVIEW_IN_PROGRESS" {
		for _, name := range slices.Sorted(maps.Keys(next)) {
			changes = append(changes, ResourceChange{Action: "Add", LogicalID: name, Type: tpl.Resources[name].Type})
		}
		return changes, nil
	}
	oldTpl, err := cachedTemplate(st.Template)
	if err != nil {
		return nil, err
	}
	prev, err := e.staticProps(st, oldTpl, st.Parameters)
	if err != nil {
		return nil, validationError("%v", err)
	}
	replaced := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(next)) {
		typ := tpl.Resources[name].Type
		old, had := prev[name]
		phys := ""
		if r := st.Resources[name]; r != nil {
			phys = r.PhysicalID
		}
		switch {
		case !had:
			changes = append(changes, ResourceChange{Action: "Add", LogicalID: name, Type: typ})
		case oldTpl.Resources[name].Type != typ || old != next[name]:
			c := ResourceChange{Action: "Modify", LogicalID: name, PhysicalID: phys, Type: typ, Replacement: "True", Scope: []string{"Properties"}}
			if oldTpl.Resources[name].Type == typ && !needsReplacement(typ, old, next[name]) {
				c.Replacement, c.Scope = "False", []string{"Tags"}
			}
			replaced[name] = c.Replacement == "True"
			changes = append(changes, c)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(next)) {
		if _, changed := replaced[name]; changed || prev[name] == "" {
			continue
		}
		for r := range replaced {
			if replaced[r] && strings.Contains(next[name], "{{"+r) {
				changes = append(changes, ResourceChange{Action: "Modify", LogicalID: name, PhysicalID: st.Resources[name].PhysicalID,
					Type: tpl.Resources[name].Type, Replacement: "Conditional", Scope: []string{"Properties"}})
				break
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(prev)) {
		if _, ok := next[name]; !ok {
			phys := ""
			if r := st.Resources[name]; r != nil {
				phys = r.PhysicalID
			}
			changes = append(changes, ResourceChange{Action: "Remove", LogicalID: name, PhysicalID: phys, Type: oldTpl.Resources[name].Type})
		}
	}
	slices.SortStableFunc(changes, func(a, b ResourceChange) int { return strings.Compare(a.LogicalID, b.LogicalID) })
	return changes, nil
}

func (e *Emulator) createChangeSet(p params) (any, error) {
	name, stackName := p.get("ChangeSetName"), p.get("StackName")
	if !stackNameRE.MatchString(name) {
		return nil, validationError("1 validation error detected: Value '%s' at 'changeSetName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*", name)
	}
	typ := p.get("ChangeSetType")
	if typ == "" {
		typ = "UPDATE"
	}
	if typ != "UPDATE" && typ != "CREATE" {
		return nil, validationError("ChangeSetType %s: the emulator makes CREATE and UPDATE change sets", typ)
	}
	in, err := readStackInput(p)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stackLocked(stackName)
	switch {
	case typ == "CREATE" && st != nil && st.Status != "REVIEW_IN_PROGRESS":
		return nil, validationError("Stack [%s] already exists and cannot be created again with the changeSet [%s].", stackName, name)
	case typ == "UPDATE" && st == nil:
		return nil, validationError("Stack [%s] does not exist", stackName)
	case typ == "UPDATE" && st.Status == "REVIEW_IN_PROGRESS":
		return nil, validationError("Stack [%s] is in REVIEW_IN_PROGRESS: create a change set of type CREATE", stackName)
	}
	if st != nil {
		for _, cs := range st.ChangeSets {
			if cs.Name == name {
				return nil, &apiError{Status: http.StatusBadRequest, Code: "AlreadyExistsException", Message: fmt.Sprintf("ChangeSet [%s] already exists", name)}
			}
		}
	}
	var tpl *template
	var vals map[string]string
	var tags []Tag
	if st == nil {
		if !stackNameRE.MatchString(stackName) {
			return nil, validationError("1 validation error detected: Value '%s' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*", stackName)
		}
		if tpl, vals, err = e.resolveLocked(in.body, in.params); err != nil {
			return nil, err
		}
		tags = in.tags
		st = e.newStackLocked(stackName, "", tpl, "", nil, nil)
		e.stackStatusLocked(st, "REVIEW_IN_PROGRESS", "User Initiated")
	} else if tpl, vals, tags, err = e.nextVersionLocked(st, p, in); err != nil {
		return nil, err
	}
	body := in.body
	if body == "" {
		body = st.Template
	}
	cs := &ChangeSet{ID: fmt.Sprintf("arn:aws:cloudformation:%s:%s:changeSet/%s/%s", e.cfg.Region, e.cfg.AccountID, name, uuid()),
		Name: name, StackID: st.ID, Type: typ, Status: "CREATE_COMPLETE", ExecutionStatus: "AVAILABLE",
		Description: p.get("Description"), Template: body, Parameters: vals, Tags: tags, Created: e.clock.Now().UTC()}
	if cs.Changes, err = e.changesLocked(st, tpl, vals); err != nil {
		return nil, err
	}
	if len(cs.Changes) == 0 && slices.Equal(tags, st.Tags) {
		cs.Status, cs.ExecutionStatus = "FAILED", "UNAVAILABLE"
		cs.StatusReason = "The submitted information didn't contain changes. Submit different information to create a change set."
	}
	st.ChangeSets = append(st.ChangeSets, cs)
	e.saveLocked()
	return struct {
		ID      string `xml:"Id"`
		StackID string `xml:"StackId"`
	}{cs.ID, st.ID}, nil
}

func (e *Emulator) changeSetLocked(name, stackName string) (*Stack, *ChangeSet, error) {
	for _, st := range e.st.Stacks {
		if stackName != "" && st.Name != stackName && st.ID != stackName {
			continue
		}
		for _, cs := range st.ChangeSets {
			if cs.ID == name || cs.Name == name && st.Status != "DELETE_COMPLETE" {
				return st, cs, nil
			}
		}
	}
	return nil, nil, &apiError{Status: http.StatusNotFound, Code: "ChangeSetNotFound", Message: fmt.Sprintf("ChangeSet [%s] does not exist", name)}
}

// executionLocked brings an executing change set's status in line with its
// stack's.
func executionLocked(st *Stack, cs *ChangeSet) string {
	if cs.ExecutionStatus == "EXECUTE_IN_PROGRESS" && stackSettled(st.Status) {
		cs.ExecutionStatus = "EXECUTE_COMPLETE"
		if strings.Contains(st.Status, "ROLLBACK") || strings.HasSuffix(st.Status, "_FAILED") {
			cs.ExecutionStatus = "EXECUTE_FAILED"
		}
	}
	return cs.ExecutionStatus
}

func (e *Emulator) describeChangeSet(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, cs, err := e.changeSetLocked(p.get("ChangeSetName"), p.get("StackName"))
	if err != nil {
		return nil, err
	}
	type resourceChange struct {
		Action      string   `xml:"Action"`
		LogicalID   string   `xml:"LogicalResourceId"`
		PhysicalID  string   `xml:"PhysicalResourceId,omitempty"`
		Type        string   `xml:"ResourceType"`
		Replacement string   `xml:"Replacement,omitempty"`
		Scope       []string `xml:"Scope>member"`
	}
	type change struct {
		Type   string         `xml:"Type"`
		Change resourceChange `xml:"ResourceChange"`
	}
	type param struct {
		Key   string `xml:"ParameterKey"`
		Value string `xml:"ParameterValue"`
	}
	r := struct {
		Name            string   `xml:"ChangeSetName"`
		ID              string   `xml:"ChangeSetId"`
		StackID         string   `xml:"StackId"`
		StackName       string   `xml:"StackName"`
		Description     string   `xml:"Description,omitempty"`
		Parameters      []param  `xml:"Parameters>member"`
		CreationTime    string   `xml:"CreationTime"`
		ExecutionStatus string   `xml:"ExecutionStatus"`
		Status          string   `xml:"Status"`
		StatusReason    string   `xml:"StatusReason,omitempty"`
		Changes         []change `xml:"Changes>member"`
	}{Name: cs.Name, ID: cs.ID, StackID: st.ID, StackName: st.Name, Description: cs.Description,
		CreationTime: cs.Created.Format(ec2Time), ExecutionStatus: executionLocked(st, cs), Status: cs.Status, StatusReason: cs.StatusReason}
	for _, k := range slices.Sorted(maps.Keys(cs.Parameters)) {
		r.Parameters = append(r.Parameters, param{k, cs.Parameters[k]})
	}
	for _, c := range cs.Changes {
		r.Changes = append(r.Changes, change{"Resource", resourceChange{c.Action, c.LogicalID, c.PhysicalID, c.Type, c.Replacement, c.Scope}})
	}
	return r, nil
}

func (e *Emulator) executeChangeSet(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st, cs, err := e.changeSetLocked(p.get("ChangeSetName"), p.get("StackName"))
	if err != nil {
		return nil, err
	}
	if cs.Status != "CREATE_COMPLETE" || executionLocked(st, cs) != "AVAILABLE" {
		return nil, &apiError{Status: http.StatusBadRequest, Code: "InvalidChangeSetStatus",
			Message: fmt.Sprintf("ChangeSet [%s] cannot be executed in its current status of [%s]", cs.ID, cs.ExecutionStatus)}
	}
	tpl, err := cachedTemplate(cs.Template)
	if err != nil {
		return nil, err
	}
	if cs.Type == "CREATE" {
		st.Template, st.Description, st.Parameters, st.Tags = cs.Template, tpl.Description, cs.Parameters, cs.Tags
		st.ClientToken = p.get("ClientRequestToken")
		e.stackStatusLocked(st, "CREATE_IN_PROGRESS", "User Initiated")
		e.saveLocked()
		e.startStackWorkerLocked(st)
	} else {
		if err := updatable(st); err != nil {
			return nil, err
		}
		e.beginUpdateLocked(st, tpl, cs.Template, cs.Parameters, cs.Tags, p.get("ClientRequestToken"))
	}
	for _, other := range st.ChangeSets {
		if other != cs && other.ExecutionStatus == "AVAILABLE" {
			other.ExecutionStatus = "OBSOLETE"
		}
	}
	cs.ExecutionStatus = "EXECUTE_IN_PROGRESS"
	e.saveLocked()
	return nil, nil
}
