package emulator

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
)

// A CloudFormation template as the emulator reads it: JSON or YAML (short
// forms such as !Ref included), checked as CloudFormation checks it before
// it creates anything — known top-level sections, a Type on every resource
// and a type CloudFormation knows (goformation's registry of every resource
// type), parameters of known types, every Ref, Fn::GetAtt, Fn::Sub variable
// and DependsOn naming something that exists, conditions that exist, no
// dependency cycle between resources, and the whole parsed by goformation
// into its typed resources. The intrinsic functions it evaluates are Ref,
// Fn::GetAtt, Fn::Sub, Fn::Join, Fn::Base64, Fn::Select, Fn::Split, Fn::If,
// Fn::Equals, Fn::Not, Fn::And, Fn::Or, Fn::FindInMap and Fn::GetAZs; a
// template using another is refused with a message saying so.

// maxTemplateBody is CloudFormation's limit on a TemplateBody.
const maxTemplateBody = 51200

type tplParam struct {
	Type           string
	Default        *string
	AllowedValues  []string
	AllowedPattern string
	MinLength      *int
	MaxLength      *int
	NoEcho         bool
	Description    string
}

type tplResource struct {
	Type       string
	Properties map[string]any
	DependsOn  []string
	Condition  string
}

type tplOutput struct {
	Value       any
	Description string
	Condition   string
}

type template struct {
	Description string
	Parameters  map[string]tplParam
	Mappings    map[string]any
	Conditions  map[string]any
	Resources   map[string]tplResource
	Outputs     map[string]tplOutput
	// deps are each resource's dependencies on other resources: DependsOn,
	// Ref, Fn::GetAtt and Fn::Sub.
	deps map[string][]string
}

// pseudo parameters CloudFormation defines.
var pseudo = []string{"AWS::AccountId", "AWS::NotificationARNs", "AWS::NoValue", "AWS::Partition", "AWS::Region",
	"AWS::StackId", "AWS::StackName", "AWS::URLSuffix"}

var paramTypes = []string{"String", "Number", "List<Number>", "CommaDelimitedList",
	"AWS::EC2::AvailabilityZone::Name", "AWS::EC2::Image::Id", "AWS::EC2::Instance::Id", "AWS::EC2::KeyPair::KeyName",
	"AWS::EC2::SecurityGroup::GroupName", "AWS::EC2::SecurityGroup::Id", "AWS::EC2::Subnet::Id", "AWS::EC2::Volume::Id",
	"AWS::EC2::VPC::Id", "List<AWS::EC2::AvailabilityZone::Name>", "List<AWS::EC2::Image::Id>", "List<AWS::EC2::Instance::Id>",
	"List<AWS::EC2::SecurityGroup::GroupName>", "List<AWS::EC2::SecurityGroup::Id>", "List<AWS::EC2::Subnet::Id>",
	"List<AWS::EC2::Volume::Id>", "List<AWS::EC2::VPC::Id>"}

var logicalIDRE = regexp.MustCompile(`^[A-Za-z0-9]+$`)

func formatError(format string, args ...any) *apiError {
	return validationError("Template format error: "+format, args...)
}

// templateJSON turns a body in JSON or YAML into JSON, intrinsic functions
// in their long form.
func templateJSON(body string) ([]byte, error) {
	if len(body) > maxTemplateBody {
		return nil, validationError("1 validation error detected: Value at 'templateBody' failed to satisfy constraint: Member must have length less than or equal to %d", maxTemplateBody)
	}
	trimmed := strings.TrimSpace(body)
	if trimmed == "" {
		return nil, validationError("Template format error: template body is empty")
	}
	if trimmed[0] == '{' {
		if !json.Valid([]byte(trimmed)) {
			return nil, formatError("JSON not well-formed.")
		}
		return []byte(trimmed), nil
	}
	b, err := intrinsics.ProcessYAML([]byte(body), &intrinsics.ProcessorOptions{NoProcess: true})
	if err != nil {
		return nil, formatError("YAML not well-formed. %v", err)
	}
	return b, nil
}

// parseTemplate reads and checks a template body.
func parseTemplate(body string) (*template, error) {
	js, err := templateJSON(body)
	if err != nil {
		return nil, err
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(js, &raw); err != nil {
		return nil, formatError("the template is not a JSON object")
	}
	known := []string{"AWSTemplateFormatVersion", "Description", "Metadata", "Parameters", "Mappings", "Conditions",
		"Resources", "Outputs", "Rules", "Transform"}
	var bad []string
	for k := range raw {
		if !slices.Contains(known, k) {
			bad = append(bad, k)
		}
	}
	if len(bad) > 0 {
		slices.Sort(bad)
		return nil, formatError("Invalid template property or properties [%s]", strings.Join(bad, ", "))
	}
	if _, ok := raw["Transform"]; ok {
		return nil, validationError("the emulator does not process template transforms (Transform)")
	}
	if v, ok := raw["AWSTemplateFormatVersion"]; ok && string(v) != `"2010-09-09"` {
		return nil, formatError("'%s' is not a supported value for AWSTemplateFormatVersion.", strings.Trim(string(v), `"`))
	}
	t := &template{Parameters: map[string]tplParam{}, Conditions: map[string]any{}, Mappings: map[string]any{},
		Resources: map[string]tplResource{}, Outputs: map[string]tplOutput{}, deps: map[string][]string{}}
	if v, ok := raw["Description"]; ok {
		if err := json.Unmarshal(v, &t.Description); err != nil || len(t.Description) > 1024 {
			return nil, formatError("Description must be a string of at most 1024 characters")
		}
	}
	for _, sec := range []struct {
		name string
		dst  any
	}{{"Conditions", &t.Conditions}, {"Mappings", &t.Mappings}} {
		if v, ok := raw[sec.name]; ok {
			if err := json.Unmarshal(v, sec.dst); err != nil {
				return nil, formatError("%s must be an object", sec.name)
			}
		}
	}
	if err := t.readParameters(raw["Parameters"]); err != nil {
		return nil, err
	}
	if err := t.readResources(raw["Resources"]); err != nil {
		return nil, err
	}
	if err := t.readOutputs(raw["Outputs"]); err != nil {
		return nil, err
	}
	if err := t.checkReferences(); err != nil {
		return nil, err
	}
	if err := t.checkCycles(); err != nil {
		return nil, err
	}
	// goformation reads every resource into its typed form: a property of
	// the wrong shape is a format error, as it is to CloudFormation.
	if _, err := goformation.ParseJSONWithOptions(js, &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: cloudformation.EncoderIntrinsics}); err != nil {
		return nil, formatError("%v", err)
	}
	return t, nil
}

func (t *template) readParameters(raw json.RawMessage) error {
	if raw == nil {
		return nil
	}
	var ps map[string]map[string]any
	if err := json.Unmarshal(raw, &ps); err != nil {
		return formatError("Parameters must be an object of objects")
	}
	for name, p := range ps {
		if !logicalIDRE.MatchString(name) {
			return formatError("Parameter name %s is non alphanumeric.", name)
		}
		var tp tplParam
		tp.Type, _ = p["Type"].(string)
		if !slices.Contains(paramTypes, tp.Type) {
			if tp.Type == "" {
				return formatError("[/Parameters/%s] Every Parameters object must contain a Type member.", name)
			}
			return formatError("Unrecognized parameter type: %s", tp.Type)
		}
		if d, ok := p["Default"]; ok {
			s := scalarString(d)
			tp.Default = &s
		}
		if av, ok := p["AllowedValues"].([]any); ok {
			for _, v := range av {
				tp.AllowedValues = append(tp.AllowedValues, scalarString(v))
			}
		}
		tp.AllowedPattern, _ = p["AllowedPattern"].(string)
		tp.Description, _ = p["Description"].(string)
		tp.NoEcho = scalarString(p["NoEcho"]) == "true"
		for key, dst := range map[string]**int{"MinLength": &tp.MinLength, "MaxLength": &tp.MaxLength} {
			if v, ok := p[key]; ok {
				n, err := strconv.Atoi(scalarString(v))
				if err != nil {
					return formatError("Parameter %s: %s must be a number", name, key)
				}
				*dst = &n
			}
		}
		t.Parameters[name] = tp
	}
	return nil
}

// scalarString is a template scalar as CloudFormation reads it: a string.
func scalarString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

var resourceKeys = []string{"Type", "Properties", "DependsOn", "Condition", "DeletionPolicy", "UpdateReplacePolicy",
	"Metadata", "CreationPolicy", "UpdatePolicy"}

func (t *template) readResources(raw json.RawMessage) error {
	var rs map[string]map[string]any
	if raw != nil {
		if err := json.Unmarshal(raw, &rs); err != nil {
			return formatError("Resources must be an object of objects")
		}
	}
	if len(rs) == 0 {
		return formatError("At least one Resources member must be defined.")
	}
	all := cloudformation.AllResources()
	var unknown []string
	for name, r := range rs {
		if !logicalIDRE.MatchString(name) {
			return formatError("Resource name %s is non alphanumeric.", name)
		}
		for k := range r {
			if !slices.Contains(resourceKeys, k) {
				return formatError("[/Resources/%s] Invalid template resource property '%s'", name, k)
			}
		}
		var tr tplResource
		tr.Type, _ = r["Type"].(string)
		if tr.Type == "" {
			return formatError("[/Resources/%s] Every Resources object must contain a Type member.", name)
		}
		if _, ok := all[tr.Type]; !ok && !strings.HasPrefix(tr.Type, "Custom::") {
			unknown = append(unknown, tr.Type)
		}
		if p, ok := r["Properties"]; ok {
			if tr.Properties, ok = p.(map[string]any); !ok {
				return formatError("[/Resources/%s/Properties] Properties must be an object", name)
			}
		}
		switch d := r["DependsOn"].(type) {
		case nil:
		case string:
			tr.DependsOn = []string{d}
		case []any:
			for _, x := range d {
				s, ok := x.(string)
				if !ok {
					return formatError("[/Resources/%s/DependsOn] DependsOn must name resources", name)
				}
				tr.DependsOn = append(tr.DependsOn, s)
			}
		default:
			return formatError("[/Resources/%s/DependsOn] DependsOn must be a string or a list of strings", name)
		}
		tr.Condition, _ = r["Condition"].(string)
		t.Resources[name] = tr
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return formatError("Unrecognized resource types: [%s]", strings.Join(slices.Compact(unknown), ","))
	}
	return nil
}

func (t *template) readOutputs(raw json.RawMessage) error {
	if raw == nil {
		return nil
	}
	var os map[string]map[string]any
	if err := json.Unmarshal(raw, &os); err != nil {
		return formatError("Outputs must be an object of objects")
	}
	for name, o := range os {
		v, ok := o["Value"]
		if !ok {
			return formatError("[/Outputs/%s] Every Outputs member must contain a Value object", name)
		}
		out := tplOutput{Value: v}
		out.Description, _ = o["Description"].(string)
		out.Condition, _ = o["Condition"].(string)
		t.Outputs[name] = out
	}
	return nil
}

// refs collects what v refers to: names (Ref, Sub variables), resources of
// Fn::GetAtt, and conditions (Fn::If).
type refs struct {
	names, attrs, conds []string
	unsupported         []string
}

var supportedFns = []string{"Ref", "Fn::GetAtt", "Fn::Sub", "Fn::Join", "Fn::Base64", "Fn::Select", "Fn::Split",
	"Fn::If", "Fn::Equals", "Fn::Not", "Fn::And", "Fn::Or", "Fn::FindInMap", "Fn::GetAZs", "Condition"}

var subVarRE = regexp.MustCompile(`\$\{([^}!][^}]*)\}`)

func (r *refs) walk(v any) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			r.walk(e)
		}
	case map[string]any:
		if len(x) == 1 {
			for k, arg := range x {
				if strings.HasPrefix(k, "Fn::") && !slices.Contains(supportedFns, k) {
					r.unsupported = append(r.unsupported, k)
				}
				switch k {
				case "Ref":
					if s, ok := arg.(string); ok {
						r.names = append(r.names, s)
					}
				case "Fn::GetAtt":
					switch a := arg.(type) {
					case []any:
						if len(a) > 0 {
							s, _ := a[0].(string)
							r.attrs = append(r.attrs, s)
						}
					case string:
						res, _, _ := strings.Cut(a, ".")
						r.attrs = append(r.attrs, res)
					}
				case "Fn::Sub":
					var s string
					vars := map[string]any{}
					switch a := arg.(type) {
					case string:
						s = a
					case []any:
						if len(a) == 2 {
							s, _ = a[0].(string)
							vars, _ = a[1].(map[string]any)
							r.walk(a[1])
						}
					}
					for _, m := range subVarRE.FindAllStringSubmatch(s, -1) {
						name := m[1]
						if _, ok := vars[name]; ok {
							continue
						}
						if res, _, ok := strings.Cut(name, "."); ok {
							r.attrs = append(r.attrs, res)
						} else {
							r.names = append(r.names, name)
						}
					}
					return
				case "Fn::If":
					if a, ok := arg.([]any); ok && len(a) > 0 {
						s, _ := a[0].(string)
						r.conds = append(r.conds, s)
					}
				case "Condition":
					if s, ok := arg.(string); ok {
						r.conds = append(r.conds, s)
					}
					return
				}
			}
		}
		for _, k := range slices.Sorted(maps.Keys(x)) {
			r.walk(x[k])
		}
	}
}

func (t *template) checkReferences() error {
	check := func(where string, v any) ([]string, error) {
		var r refs
		r.walk(v)
		if len(r.unsupported) > 0 {
			return nil, validationError("the emulator does not evaluate %s (in the %s block)", strings.Join(slices.Compact(r.unsupported), ", "), where)
		}
		var missing, deps []string
		for _, n := range r.names {
			_, param := t.Parameters[n]
			_, res := t.Resources[n]
			switch {
			case res:
				deps = append(deps, n)
			case param, slices.Contains(pseudo, n):
			default:
				missing = append(missing, n)
			}
		}
		for _, n := range r.attrs {
			if _, ok := t.Resources[n]; ok {
				deps = append(deps, n)
			} else {
				missing = append(missing, n)
			}
		}
		for _, c := range r.conds {
			if _, ok := t.Conditions[c]; !ok {
				return nil, formatError("Unresolved condition dependency %s in the %s block of the template", c, where)
			}
		}
		if len(missing) > 0 {
			slices.Sort(missing)
			return nil, formatError("Unresolved resource dependencies [%s] in the %s block of the template", strings.Join(slices.Compact(missing), ", "), where)
		}
		return deps, nil
	}
	for _, c := range t.Conditions {
		deps, err := check("Conditions", c)
		if err != nil {
			return err
		}
		if len(deps) > 0 {
			return formatError("Unresolved dependencies [%s]. Cannot reference resources in the Conditions block of the template", strings.Join(deps, ", "))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t.Resources)) {
		r := t.Resources[name]
		deps, err := check("Resources", r.Properties)
		if err != nil {
			return err
		}
		var missing []string
		for _, d := range r.DependsOn {
			if _, ok := t.Resources[d]; !ok {
				missing = append(missing, d)
			}
		}
		if len(missing) > 0 {
			return formatError("Unresolved resource dependencies [%s] in the Resources block of the template", strings.Join(missing, ", "))
		}
		if r.Condition != "" {
			if _, ok := t.Conditions[r.Condition]; !ok {
				return formatError("Unresolved condition dependency %s in the Resources block of the template", r.Condition)
			}
		}
		deps = append(deps, r.DependsOn...)
		slices.Sort(deps)
		t.deps[name] = slices.Compact(deps)
	}
	for _, o := range t.Outputs {
		if _, err := check("Outputs", o.Value); err != nil {
			return err
		}
		if o.Condition != "" {
			if _, ok := t.Conditions[o.Condition]; !ok {
				return formatError("Unresolved condition dependency %s in the Outputs block of the template", o.Condition)
			}
		}
	}
	return nil
}

// checkCycles refuses a dependency cycle, naming the resources on it as
// CloudFormation does.
func (t *template) checkCycles() error {
	const (
		unvisited = iota
		active
		done
	)
	state := map[string]int{}
	var stack []string
	var cycle []string
	var visit func(string) bool
	visit = func(n string) bool {
		state[n] = active
		stack = append(stack, n)
		for _, d := range t.deps[n] {
			switch state[d] {
			case active:
				i := slices.Index(stack, d)
				cycle = slices.Clone(stack[i:])
				return true
			case unvisited:
				if visit(d) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		state[n] = done
		return false
	}
	for _, n := range slices.Sorted(maps.Keys(t.Resources)) {
		if state[n] == unvisited && visit(n) {
			slices.Sort(cycle)
			return validationError("Circular dependency between resources: [%s]", strings.Join(cycle, ", "))
		}
	}
	return nil
}

// order lists the resources so that each comes after its dependencies
// (names break ties).
func (t *template) order() []string {
	var out []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		for _, d := range t.deps[n] {
			visit(d)
		}
		out = append(out, n)
	}
	for _, n := range slices.Sorted(maps.Keys(t.Resources)) {
		visit(n)
	}
	return out
}

// paramValue is a parameter's value: one string, or a list for List types.
type paramValue struct {
	s    string
	list []string
	isL  bool
}

func (p paramValue) value() any {
	if p.isL {
		out := make([]any, len(p.list))
		for i, s := range p.list {
			out[i] = s
		}
		return out
	}
	return p.s
}

// resolveParameters checks the given values against the template and fills
// in defaults. lookup says whether an AWS-specific value exists.
func (t *template) resolveParameters(given map[string]string, exists func(kind, id string) bool) (map[string]paramValue, error) {
	var unknown []string
	for k := range given {
		if _, ok := t.Parameters[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, validationError("Parameters: [%s] do not exist in the template", strings.Join(unknown, ", "))
	}
	out := map[string]paramValue{}
	var missing []string
	for _, name := range slices.Sorted(maps.Keys(t.Parameters)) {
		p := t.Parameters[name]
		v, ok := given[name]
		if !ok {
			if p.Default == nil {
				missing = append(missing, name)
				continue
			}
			v = *p.Default
		}
		if len(p.AllowedValues) > 0 && !slices.Contains(p.AllowedValues, v) {
			return nil, validationError("Parameter '%s' must be one of AllowedValues", name)
		}
		if p.AllowedPattern != "" {
			if re, err := regexp.Compile("^(?:" + p.AllowedPattern + ")$"); err == nil && !re.MatchString(v) {
				return nil, validationError("Parameter '%s' must match pattern %s", name, p.AllowedPattern)
			}
		}
		if p.MinLength != nil && len(v) < *p.MinLength || p.MaxLength != nil && len(v) > *p.MaxLength {
			return nil, validationError("Parameter '%s' must contain from %v to %v characters", name, deref(p.MinLength), deref(p.MaxLength))
		}
		pv := paramValue{s: v}
		elem, isList := strings.CutPrefix(p.Type, "List<")
		elem = strings.TrimSuffix(elem, ">")
		if isList || p.Type == "CommaDelimitedList" {
			pv.isL = true
			if v != "" {
				for _, e := range strings.Split(v, ",") {
					pv.list = append(pv.list, strings.TrimSpace(e))
				}
			}
		}
		for _, item := range append([]string{v}, pv.list...)[boolInt(pv.isL):] {
			switch elem {
			case "Number":
				if _, err := strconv.ParseFloat(item, 64); err != nil {
					return nil, validationError("Parameter '%s' must be a number not '%s'", name, item)
				}
			case "AWS::EC2::Subnet::Id", "AWS::EC2::SecurityGroup::Id", "AWS::EC2::VPC::Id", "AWS::EC2::Image::Id", "AWS::EC2::Instance::Id":
				if !exists(elem, item) {
					return nil, validationError("Parameter value %s for parameter name %s does not exist. Rollback requested by user.", item, name)
				}
			}
		}
		out[name] = pv
	}
	if len(missing) > 0 {
		return nil, validationError("Parameters: [%s] must have values", strings.Join(missing, ", "))
	}
	return out, nil
}

func deref(p *int) any {
	if p == nil {
		return "any number of"
	}
	return *p
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// noValue is AWS::NoValue: the property (or list item) it stands for is
// removed.
type noValueT struct{}

var noValue = noValueT{}

// evaluator resolves intrinsic functions against a stack being made.
type evaluator struct {
	t      *template
	params map[string]paramValue
	conds  map[string]bool
	pseudo map[string]any
	// resource returns a created resource's physical id and attributes.
	resource func(name string) (physical string, attrs map[string]string, ok bool)
	azs      []string
}

func (ev *evaluator) condition(name string) (bool, error) {
	if v, ok := ev.conds[name]; ok {
		return v, nil
	}
	c, ok := ev.t.Conditions[name]
	if !ok {
		return false, fmt.Errorf("condition %s does not exist", name)
	}
	v, err := ev.eval(c)
	if err != nil {
		return false, err
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("condition %s is not a boolean", name)
	}
	ev.conds[name] = b
	return b, nil
}

// eval resolves v. A map of one intrinsic key is that function; lists drop
// AWS::NoValue items.
func (ev *evaluator) eval(v any) (any, error) {
	switch x := v.(type) {
	case []any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			r, err := ev.eval(e)
			if err != nil {
				return nil, err
			}
			if r != noValue {
				out = append(out, r)
			}
		}
		return out, nil
	case map[string]any:
		if len(x) == 1 {
			for k, arg := range x {
				if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
					return ev.fn(k, arg)
				}
			}
		}
		out := map[string]any{}
		for k, e := range x {
			r, err := ev.eval(e)
			if err != nil {
				return nil, err
			}
			if r != noValue {
				out[k] = r
			}
		}
		return out, nil
	}
	return v, nil
}

func (ev *evaluator) str(v any, fn string) (string, error) {
	r, err := ev.eval(v)
	if err != nil {
		return "", err
	}
	switch s := r.(type) {
	case string:
		return s, nil
	case float64, bool:
		return scalarString(s), nil
	}
	return "", fmt.Errorf("%s: expected a string, got %s", fn, kind(r))
}

func kind(v any) string {
	switch v.(type) {
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func (ev *evaluator) list(v any, fn string) ([]any, error) {
	r, err := ev.eval(v)
	if err != nil {
		return nil, err
	}
	l, ok := r.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: expected a list, got %s", fn, kind(r))
	}
	return l, nil
}

func (ev *evaluator) ref(name string) (any, error) {
	if p, ok := ev.params[name]; ok {
		return p.value(), nil
	}
	if name == "AWS::NoValue" {
		return noValue, nil
	}
	if v, ok := ev.pseudo[name]; ok {
		return v, nil
	}
	if phys, _, ok := ev.resource(name); ok {
		return phys, nil
	}
	return nil, fmt.Errorf("Ref %s: no such parameter or created resource", name)
}

func (ev *evaluator) getAtt(res, attr string) (any, error) {
	_, attrs, ok := ev.resource(res)
	if !ok {
		return nil, fmt.Errorf("Fn::GetAtt %s.%s: resource %s is not created", res, attr, res)
	}
	v, ok := attrs[attr]
	if !ok {
		return nil, fmt.Errorf("Template error: resource %s does not support attribute type %s in Fn::GetAtt", res, attr)
	}
	return v, nil
}

func (ev *evaluator) fn(name string, arg any) (any, error) {
	switch name {
	case "Ref":
		s, ok := arg.(string)
		if !ok {
			return nil, fmt.Errorf("Ref takes a name")
		}
		return ev.ref(s)
	case "Condition":
		s, _ := arg.(string)
		return ev.condition(s)
	case "Fn::GetAtt":
		var res, attr string
		switch a := arg.(type) {
		case string:
			res, attr, _ = strings.Cut(a, ".")
		case []any:
			if len(a) == 2 {
				res, _ = a[0].(string)
				var err error
				if attr, err = ev.str(a[1], name); err != nil {
					return nil, err
				}
			}
		}
		return ev.getAtt(res, attr)
	case "Fn::Base64":
		s, err := ev.str(arg, name)
		if err != nil {
			return nil, err
		}
		return base64.StdEncoding.EncodeToString([]byte(s)), nil
	case "Fn::Join":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return nil, fmt.Errorf("Fn::Join takes a delimiter and a list")
		}
		delim, err := ev.str(a[0], name)
		if err != nil {
			return nil, err
		}
		items, err := ev.list(a[1], name)
		if err != nil {
			return nil, err
		}
		parts := make([]string, len(items))
		for i, it := range items {
			if parts[i], err = ev.str(it, name); err != nil {
				return nil, err
			}
		}
		return strings.Join(parts, delim), nil
	case "Fn::Select":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return nil, fmt.Errorf("Fn::Select takes an index and a list")
		}
		is, err := ev.str(a[0], name)
		if err != nil {
			return nil, err
		}
		items, err := ev.list(a[1], name)
		if err != nil {
			return nil, err
		}
		i, err := strconv.Atoi(is)
		if err != nil || i < 0 || i >= len(items) {
			return nil, fmt.Errorf("Template error: Fn::Select cannot select nonexistent value at index %s", is)
		}
		return items[i], nil
	case "Fn::Split":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return nil, fmt.Errorf("Fn::Split takes a delimiter and a string")
		}
		delim, err := ev.str(a[0], name)
		if err != nil {
			return nil, err
		}
		s, err := ev.str(a[1], name)
		if err != nil {
			return nil, err
		}
		var out []any
		for _, p := range strings.Split(s, delim) {
			out = append(out, p)
		}
		return out, nil
	case "Fn::Sub":
		return ev.sub(arg)
	case "Fn::If":
		a, ok := arg.([]any)
		if !ok || len(a) != 3 {
			return nil, fmt.Errorf("Fn::If takes a condition and two values")
		}
		c, _ := a[0].(string)
		b, err := ev.condition(c)
		if err != nil {
			return nil, err
		}
		if b {
			return ev.eval(a[1])
		}
		return ev.eval(a[2])
	case "Fn::Equals":
		a, ok := arg.([]any)
		if !ok || len(a) != 2 {
			return nil, fmt.Errorf("Fn::Equals takes two values")
		}
		x, err := ev.eval(a[0])
		if err != nil {
			return nil, err
		}
		y, err := ev.eval(a[1])
		if err != nil {
			return nil, err
		}
		return scalarString(x) == scalarString(y), nil
	case "Fn::Not", "Fn::And", "Fn::Or":
		a, ok := arg.([]any)
		if !ok || len(a) == 0 {
			return nil, fmt.Errorf("%s takes a list of conditions", name)
		}
		var vals []bool
		for _, c := range a {
			r, err := ev.eval(c)
			if err != nil {
				return nil, err
			}
			b, ok := r.(bool)
			if !ok {
				return nil, fmt.Errorf("%s: a condition is not a boolean", name)
			}
			vals = append(vals, b)
		}
		switch name {
		case "Fn::Not":
			return !vals[0], nil
		case "Fn::And":
			return !slices.Contains(vals, false), nil
		}
		return slices.Contains(vals, true), nil
	case "Fn::FindInMap":
		a, ok := arg.([]any)
		if !ok || len(a) < 3 {
			return nil, fmt.Errorf("Fn::FindInMap takes a map name and two keys")
		}
		var keys [3]string
		for i := range keys {
			var err error
			if keys[i], err = ev.str(a[i], name); err != nil {
				return nil, err
			}
		}
		m1, _ := ev.t.Mappings[keys[0]].(map[string]any)
		m2, _ := m1[keys[1]].(map[string]any)
		v, ok := m2[keys[2]]
		if !ok {
			return nil, fmt.Errorf("Template error: Unable to get mapping for %s::%s::%s", keys[0], keys[1], keys[2])
		}
		return v, nil
	case "Fn::GetAZs":
		out := make([]any, len(ev.azs))
		for i, z := range ev.azs {
			out[i] = z
		}
		return out, nil
	}
	return nil, fmt.Errorf("the emulator does not evaluate %s", name)
}

func (ev *evaluator) sub(arg any) (any, error) {
	var s string
	vars := map[string]any{}
	switch a := arg.(type) {
	case string:
		s = a
	case []any:
		if len(a) != 2 {
			return nil, fmt.Errorf("Fn::Sub takes a string and a map of variables")
		}
		s, _ = a[0].(string)
		m, _ := a[1].(map[string]any)
		for k, v := range m {
			r, err := ev.str(v, "Fn::Sub")
			if err != nil {
				return nil, err
			}
			vars[k] = r
		}
	default:
		return nil, fmt.Errorf("Fn::Sub takes a string")
	}
	var b bytes.Buffer
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		j := strings.Index(s[i:], "}")
		if j < 0 {
			b.WriteString(s)
			break
		}
		b.WriteString(s[:i])
		name := s[i+2 : i+j]
		s = s[i+j+1:]
		if lit, ok := strings.CutPrefix(name, "!"); ok {
			b.WriteString("${" + lit + "}")
			continue
		}
		var v any
		var err error
		if x, ok := vars[name]; ok {
			v = x
		} else if res, attr, ok := strings.Cut(name, "."); ok {
			v, err = ev.getAtt(res, attr)
		} else {
			v, err = ev.ref(name)
		}
		if err != nil {
			return nil, err
		}
		str, err := ev.str(v, "Fn::Sub")
		if err != nil {
			return nil, err
		}
		b.WriteString(str)
	}
	return b.String(), nil
}
