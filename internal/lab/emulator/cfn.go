package emulator

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/awslabs/goformation/v7/cloudformation/ec2"
)

// CloudFormation (AWS Query, 2010-05-15): CreateStack, UpdateStack,
// DeleteStack, DescribeStacks, DescribeStackEvents, DescribeStackResources,
// CreateChangeSet, DescribeChangeSet, ExecuteChangeSet, ValidateTemplate.
// Stacks make AWS::EC2::Instance (through the emulator's RunInstances
// rules), AWS::CloudFormation::WaitConditionHandle (a URL on this listener
// that takes signals, as the presigned URL AWS hands out) and
// AWS::CloudFormation::WaitCondition; any other known type fails to create,
// saying the emulator does not make it.

func (e *Emulator) cfnActions() map[string]queryAction {
	return map[string]queryAction{
		"CreateStack":            e.createStack,
		"UpdateStack":            e.updateStack,
		"DeleteStack":            e.deleteStack,
		"DescribeStacks":         e.describeStacks,
		"DescribeStackEvents":    e.describeStackEvents,
		"DescribeStackResources": e.describeStackResources,
		"CreateChangeSet":        e.createChangeSet,
		"DescribeChangeSet":      e.describeChangeSet,
		"ExecuteChangeSet":       e.executeChangeSet,
		"ValidateTemplate":       e.validateTemplate,
	}
}

var stackNameRE = regexp.MustCompile(`^[a-zA-Z][-a-zA-Z0-9]{0,127}$`)

func (e *Emulator) baseURL() string {
	if e.ln != nil {
		return "http://" + e.ln.Addr().String()
	}
	return "http://localhost"
}

func stackNotFound(name string) *apiError {
	return validationError("Stack with id %s does not exist", name)
}

// stackLocked finds a stack by name (the live one) or id (deleted ones too).
func (e *Emulator) stackLocked(nameOrID string) *Stack {
	if st := e.st.Stacks[nameOrID]; st != nil {
		return st
	}
	for _, st := range e.st.Stacks {
		if st.Name == nameOrID && st.Status != "DELETE_COMPLETE" {
			return st
		}
	}
	return nil
}

// stackInput is what CreateStack, UpdateStack and CreateChangeSet share.
type stackInput struct {
	body      string
	params    map[string]string
	previous  map[string]bool // UsePreviousValue
	tags      []Tag
	tagsGiven bool
}

func readStackInput(p params) (stackInput, error) {
	in := stackInput{body: p.get("TemplateBody"), params: map[string]string{}, previous: map[string]bool{}}
	if p.get("TemplateURL") != "" {
		return in, validationError("the emulator takes templates in TemplateBody only, not TemplateURL")
	}
	for _, it := range p.items("Parameters.member") {
		k := it.get("ParameterKey")
		if it.boolean("UsePreviousValue") {
			in.previous[k] = true
			continue
		}
		in.params[k] = it.get("ParameterValue")
	}
	for _, it := range p.items("Tags.member") {
		in.tags = append(in.tags, Tag{Key: it.get("Key"), Value: it.get("Value")})
	}
	in.tagsGiven = p.has("Tags") || len(in.tags) > 0
	if len(in.tags) > 50 {
		return in, validationError("1 validation error detected: Value at 'tags' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	for _, t := range in.tags {
		if t.Key == "" || strings.HasPrefix(strings.ToLower(t.Key), "aws:") {
			return in, validationError("Invalid tag key %q: keys may not be empty or start with aws:", t.Key)
		}
	}
	return in, nil
}

// resolveLocked parses the template and resolves its parameters, checking
// AWS-specific values against what the account holds.
func (e *Emulator) resolveLocked(body string, given map[string]string) (*template, map[string]string, error) {
	tpl, err := cachedTemplate(body)
	if err != nil {
		return nil, nil, err
	}
	vals, err := tpl.resolveParameters(given, func(kind, id string) bool {
		switch kind {
		case "AWS::EC2::Subnet::Id":
			return e.st.Subnets[id] != nil
		case "AWS::EC2::SecurityGroup::Id":
			return e.st.SecurityGroups[id] != nil
		case "AWS::EC2::VPC::Id":
			return e.st.Vpcs[id] != nil
		case "AWS::EC2::Image::Id":
			im := e.st.Images[id]
			return im != nil && e.imageStateLocked(im) != "deregistered"
		case "AWS::EC2::Instance::Id":
			return e.st.Instances[id] != nil
		}
		return true
	})
	if err != nil {
		return nil, nil, err
	}
	out := map[string]string{}
	for k, v := range vals {
		if v.isL {
			out[k] = strings.Join(v.list, ",")
		} else {
			out[k] = v.s
		}
	}
	return tpl, out, nil
}

func (e *Emulator) createStack(p params) (any, error) {
	name := p.get("StackName")
	if !stackNameRE.MatchString(name) {
		return nil, validationError("1 validation error detected: Value '%s' at 'stackName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z][-a-zA-Z0-9]*", name)
	}
	in, err := readStackInput(p)
	if err != nil {
		return nil, err
	}
	token := p.get("ClientRequestToken")
	e.mu.Lock()
	defer e.mu.Unlock()
	if st := e.stackLocked(name); st != nil {
		if token != "" && st.ClientToken == token {
			return stackIDXML{st.ID}, nil
		}
		return nil, &apiError{Status: http.StatusBadRequest, Code: "AlreadyExistsException", Message: fmt.Sprintf("Stack [%s] already exists", name)}
	}
	tpl, vals, err := e.resolveLocked(in.body, in.params)
	if err != nil {
		return nil, err
	}
	st := e.newStackLocked(name, token, tpl, in.body, vals, in.tags)
	st.DisableRollback = p.boolean("DisableRollback") || p.get("OnFailure") == "DO_NOTHING"
	e.stackStatusLocked(st, "CREATE_IN_PROGRESS", "User Initiated")
	e.saveLocked()
	e.startStackWorkerLocked(st)
	return stackIDXML{st.ID}, nil
}

func (e *Emulator) newStackLocked(name, token string, tpl *template, body string, vals map[string]string, tags []Tag) *Stack {
	st := &Stack{ID: fmt.Sprintf("arn:aws:cloudformation:%s:%s:stack/%s/%s", e.cfg.Region, e.cfg.AccountID, name, uuid()),
		Name: name, Description: tpl.Description, Template: body, Parameters: vals, Tags: tags, ClientToken: token,
		Resources: map[string]*StackResource{}, Created: e.clock.Now().UTC(), Op: 1}
	e.st.Stacks[st.ID] = st
	return st
}

func uuid() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

type stackIDXML struct {
	StackID string `xml:"StackId"`
}

// updatable says whether a stack may take an update now.
func updatable(st *Stack) error {
	switch st.Status {
	case "CREATE_COMPLETE", "UPDATE_COMPLETE", "UPDATE_ROLLBACK_COMPLETE":
		return nil
	}
	return validationError("Stack:%s is in %s state and can not be updated.", st.ID, st.Status)
}

// nextVersion works out an update's template, parameters and tags.
func (e *Emulator) nextVersionLocked(st *Stack, p params, in stackInput) (*template, map[string]string, []Tag, error) {
	body := in.body
	if p.boolean("UsePreviousTemplate") {
		body = st.Template
	}
	if body == "" {
		return nil, nil, nil, validationError("Either Template URL or Template Body must be specified.")
	}
	given := maps.Clone(in.params)
	for k := range in.previous {
		v, ok := st.Parameters[k]
		if !ok {
			return nil, nil, nil, validationError("Invalid input for parameter key %s. Cannot specify usePreviousValue as true for a parameter key not in the previous template", k)
		}
		given[k] = v
	}
	tpl, vals, err := e.resolveLocked(body, given)
	if err != nil {
		return nil, nil, nil, err
	}
	tags := st.Tags
	if in.tagsGiven {
		tags = in.tags
	}
	return tpl, vals, tags, nil
}

func (e *Emulator) updateStack(p params) (any, error) {
	in, err := readStackInput(p)
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stackLocked(p.get("StackName"))
	if st == nil {
		return nil, stackNotFound(p.get("StackName"))
	}
	if err := updatable(st); err != nil {
		return nil, err
	}
	tpl, vals, tags, err := e.nextVersionLocked(st, p, in)
	if err != nil {
		return nil, err
	}
	body := cmp.Or(in.body, st.Template)
	if body == st.Template && maps.Equal(vals, st.Parameters) && slices.Equal(tags, st.Tags) {
		return nil, validationError("No updates are to be performed.")
	}
	e.beginUpdateLocked(st, tpl, body, vals, tags, p.get("ClientRequestToken"))
	return stackIDXML{st.ID}, nil
}

func (e *Emulator) beginUpdateLocked(st *Stack, tpl *template, body string, vals map[string]string, tags []Tag, token string) {
	prev := &stackVersion{Template: st.Template, Description: st.Description, Parameters: st.Parameters,
		Resources: map[string]*StackResource{}, Outputs: st.Outputs}
	for k, r := range st.Resources {
		c := *r
		prev.Resources[k] = &c
	}
	st.Prev, st.Template, st.Description, st.Parameters, st.Tags = prev, body, tpl.Description, vals, tags
	st.Op++
	st.Updated = e.clock.Now().UTC()
	st.ClientToken = token
	e.stackStatusLocked(st, "UPDATE_IN_PROGRESS", "User Initiated")
	e.saveLocked()
	e.startStackWorkerLocked(st)
}

func (e *Emulator) deleteStack(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stackLocked(p.get("StackName"))
	if st == nil || st.Status == "DELETE_COMPLETE" || st.Status == "DELETE_IN_PROGRESS" {
		return nil, nil // deleting what is not there (or going) succeeds
	}
	if !stackSettled(st.Status) && st.Status != "CREATE_IN_PROGRESS" && st.Status != "ROLLBACK_IN_PROGRESS" {
		return nil, validationError("Stack %s is in %s state and can not be deleted.", st.ID, st.Status)
	}
	// A create in progress stops where it is: what it made is deleted.
	for _, r := range st.Resources {
		if strings.HasSuffix(r.Status, "_IN_PROGRESS") && !strings.HasPrefix(r.Status, "DELETE") {
			e.resourceStatusLocked(st, r, "CREATE_FAILED", "Resource creation cancelled")
		}
	}
	st.ClientToken = p.get("ClientRequestToken")
	e.stackStatusLocked(st, "DELETE_IN_PROGRESS", "User Initiated")
	e.saveLocked()
	e.startStackWorkerLocked(st)
	return nil, nil
}

type stackXML struct {
	StackID         string `xml:"StackId"`
	StackName       string `xml:"StackName"`
	Description     string `xml:"Description,omitempty"`
	CreationTime    string `xml:"CreationTime"`
	LastUpdatedTime string `xml:"LastUpdatedTime,omitempty"`
	DeletionTime    string `xml:"DeletionTime,omitempty"`
	StackStatus     string `xml:"StackStatus"`
	StatusReason    string `xml:"StackStatusReason,omitempty"`
	DisableRollback bool   `xml:"DisableRollback"`
	Parameters      []struct {
		Key   string `xml:"ParameterKey"`
		Value string `xml:"ParameterValue"`
	} `xml:"Parameters>member"`
	Outputs []struct {
		Key         string `xml:"OutputKey"`
		Value       string `xml:"OutputValue"`
		Description string `xml:"Description,omitempty"`
	} `xml:"Outputs>member"`
	Tags []struct {
		Key   string `xml:"Key"`
		Value string `xml:"Value"`
	} `xml:"Tags>member"`
}

func optTime(t interface{ IsZero() bool }, s string) string {
	if t.IsZero() {
		return ""
	}
	return s
}

func (e *Emulator) stackXML(st *Stack) stackXML {
	x := stackXML{StackID: st.ID, StackName: st.Name, Description: st.Description, CreationTime: st.Created.Format(ec2Time),
		LastUpdatedTime: optTime(st.Updated, st.Updated.Format(ec2Time)), DeletionTime: optTime(st.Deleted, st.Deleted.Format(ec2Time)),
		StackStatus: st.Status, StatusReason: st.StatusReason, DisableRollback: st.DisableRollback}
	tpl, _ := cachedTemplate(st.Template)
	for _, k := range slices.Sorted(maps.Keys(st.Parameters)) {
		v := st.Parameters[k]
		if tpl != nil && tpl.Parameters[k].NoEcho {
			v = "****"
		}
		x.Parameters = append(x.Parameters, struct {
			Key   string `xml:"ParameterKey"`
			Value string `xml:"ParameterValue"`
		}{k, v})
	}
	for _, o := range st.Outputs {
		x.Outputs = append(x.Outputs, struct {
			Key         string `xml:"OutputKey"`
			Value       string `xml:"OutputValue"`
			Description string `xml:"Description,omitempty"`
		}{o.Key, o.Value, o.Description})
	}
	for _, t := range st.Tags {
		x.Tags = append(x.Tags, struct {
			Key   string `xml:"Key"`
			Value string `xml:"Value"`
		}{t.Key, t.Value})
	}
	return x
}

func (e *Emulator) describeStacks(p params) (any, error) {
	name := p.get("StackName")
	e.mu.Lock()
	defer e.mu.Unlock()
	var sts []*Stack
	if name != "" {
		st := e.stackLocked(name)
		if st == nil {
			return nil, stackNotFound(name)
		}
		sts = []*Stack{st}
	} else {
		for _, st := range e.st.Stacks {
			if st.Status != "DELETE_COMPLETE" {
				sts = append(sts, st)
			}
		}
		slices.SortFunc(sts, func(a, b *Stack) int { return b.Created.Compare(a.Created) })
	}
	var out []stackXML
	for _, st := range sts {
		out = append(out, e.stackXML(st))
	}
	return struct {
		Stacks []stackXML `xml:"Stacks>member"`
	}{out}, nil
}

type eventXML struct {
	StackID     string `xml:"StackId"`
	EventID     string `xml:"EventId"`
	StackName   string `xml:"StackName"`
	LogicalID   string `xml:"LogicalResourceId"`
	PhysicalID  string `xml:"PhysicalResourceId,omitempty"`
	Type        string `xml:"ResourceType"`
	Timestamp   string `xml:"Timestamp"`
	Status      string `xml:"ResourceStatus"`
	Reason      string `xml:"ResourceStatusReason,omitempty"`
	ClientToken string `xml:"ClientRequestToken,omitempty"`
}

// describeStackEvents lists events newest first, 100 a page.
func (e *Emulator) describeStackEvents(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stackLocked(p.get("StackName"))
	if st == nil {
		return nil, stackNotFound(p.get("StackName"))
	}
	start := 0
	if tok := p.get("NextToken"); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(st.Events) {
			return nil, validationError("Invalid NextToken %q", tok)
		}
		start = n
	}
	end, next := min(start+100, len(st.Events)), ""
	if end < len(st.Events) {
		next = strconv.Itoa(end)
	}
	var out []eventXML
	for i := len(st.Events) - 1 - start; i >= len(st.Events)-end; i-- {
		ev := st.Events[i]
		out = append(out, eventXML{st.ID, ev.ID, st.Name, ev.LogicalID, ev.PhysicalID, ev.Type, ev.Time.Format(ec2Time),
			ev.Status, ev.Reason, ev.ClientToken})
	}
	return struct {
		Events    []eventXML `xml:"StackEvents>member"`
		NextToken string     `xml:"NextToken,omitempty"`
	}{out, next}, nil
}

func (e *Emulator) describeStackResources(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.stackLocked(p.get("StackName"))
	if st == nil {
		return nil, stackNotFound(p.get("StackName"))
	}
	type item struct {
		StackName  string `xml:"StackName"`
		StackID    string `xml:"StackId"`
		LogicalID  string `xml:"LogicalResourceId"`
		PhysicalID string `xml:"PhysicalResourceId,omitempty"`
		Type       string `xml:"ResourceType"`
		Timestamp  string `xml:"Timestamp"`
		Status     string `xml:"ResourceStatus"`
		Reason     string `xml:"ResourceStatusReason,omitempty"`
	}
	var out []item
	for _, k := range slices.Sorted(maps.Keys(st.Resources)) {
		r := st.Resources[k]
		out = append(out, item{st.Name, st.ID, r.LogicalID, r.PhysicalID, r.Type, r.Updated.Format(ec2Time), r.Status, r.Reason})
	}
	return struct {
		Resources []item `xml:"StackResources>member"`
	}{out}, nil
}

func (e *Emulator) validateTemplate(p params) (any, error) {
	if p.get("TemplateURL") != "" {
		return nil, validationError("the emulator takes templates in TemplateBody only, not TemplateURL")
	}
	tpl, err := parseTemplate(p.get("TemplateBody"))
	if err != nil {
		return nil, err
	}
	type param struct {
		Key         string `xml:"ParameterKey"`
		Default     string `xml:"DefaultValue,omitempty"`
		NoEcho      bool   `xml:"NoEcho"`
		Description string `xml:"Description,omitempty"`
	}
	var ps []param
	for _, k := range slices.Sorted(maps.Keys(tpl.Parameters)) {
		tp := tpl.Parameters[k]
		ps = append(ps, param{k, derefString(tp.Default), tp.NoEcho, tp.Description})
	}
	return struct {
		Parameters  []param `xml:"Parameters>member"`
		Description string  `xml:"Description,omitempty"`
	}{ps, tpl.Description}, nil
}

func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// instanceSpecOf reads an AWS::EC2::Instance's resolved properties through
// goformation's typed resource, which refuses a property it does not know.
func instanceSpecOf(props map[string]any) (instanceSpec, error) {
	var spec instanceSpec
	b, err := json.Marshal(map[string]any{"Type": "AWS::EC2::Instance", "Properties": props})
	if err != nil {
		return spec, err
	}
	var in ec2.Instance
	if err := json.Unmarshal(b, &in); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te):
			return spec, fmt.Errorf("Value of property %s must be of type %s", strings.TrimPrefix(te.Field, "Properties."), te.Type)
		case strings.Contains(err.Error(), "unknown field"):
			_, f, _ := strings.Cut(err.Error(), "unknown field ")
			return spec, fmt.Errorf("Encountered unsupported property %s", strings.Trim(f, `"`))
		}
		return spec, err
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	spec = instanceSpec{ImageID: str(in.ImageId), InstanceType: str(in.InstanceType), SubnetID: str(in.SubnetId),
		PrivateIP: str(in.PrivateIpAddress), SecurityGroups: in.SecurityGroupIds, KeyName: str(in.KeyName),
		InstanceProfile: str(in.IamInstanceProfile), UserData: str(in.UserData),
		VolumeTypes: map[string]string{}, VolumeSizes: map[string]int64{}}
	if len(in.SecurityGroups) > 0 {
		return spec, fmt.Errorf("the emulator takes security groups by id (SecurityGroupIds or a network interface's GroupSet)")
	}
	if len(in.NetworkInterfaces) > 1 {
		return spec, fmt.Errorf("the emulator launches with one network interface")
	}
	for _, ni := range in.NetworkInterfaces {
		if spec.SubnetID != "" || len(spec.SecurityGroups) > 0 || spec.PrivateIP != "" {
			return spec, fmt.Errorf("Network interfaces and an instance-level subnet ID, security groups or private IP address may not be specified on the same request")
		}
		if ni.DeviceIndex != "0" {
			return spec, fmt.Errorf("the network interface must have DeviceIndex 0")
		}
		spec.SubnetID, spec.PrivateIP, spec.SecurityGroups = str(ni.SubnetId), str(ni.PrivateIpAddress), ni.GroupSet
		spec.AssociatePublicIP = ni.AssociatePublicIpAddress
	}
	for _, bd := range in.BlockDeviceMappings {
		if bd.Ebs == nil {
			continue
		}
		spec.VolumeTypes[bd.DeviceName] = str(bd.Ebs.VolumeType)
		if bd.Ebs.VolumeSize != nil {
			spec.VolumeSizes[bd.DeviceName] = int64(*bd.Ebs.VolumeSize)
		}
	}
	for _, t := range in.Tags {
		spec.Tags = append(spec.Tags, Tag{Key: t.Key, Value: t.Value})
	}
	return spec, nil
}

// serveSignal takes a signal PUT to a wait condition handle's URL:
// PUT /cfn-signal/<token> with {"Status","Reason","UniqueId","Data"}.
func (e *Emulator) serveSignal(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut {
		http.Error(w, "signal a wait condition with PUT", http.StatusMethodNotAllowed)
		return
	}
	token := strings.TrimPrefix(r.URL.Path, "/cfn-signal/")
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	var s Signal
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&s); err != nil {
		http.Error(w, "the signal is not a JSON object: "+err.Error(), http.StatusBadRequest)
		return
	}
	if err := e.signal(token, s); errors.Is(err, errNoHandle) {
		// As S3 answers a presigned URL that is not (or no longer) valid.
		http.Error(w, "AccessDenied: the wait condition handle does not exist", http.StatusForbidden)
		return
	} else if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.WriteHeader(http.StatusOK)
}
