// Package iampolicy parses and evaluates AWS IAM policy documents the way
// IAM does, failing closed: an explicit Deny wins over any Allow, nothing is
// allowed unless a statement allows it, and a document using an element or
// condition operator this package does not know is refused at Parse (IAM
// answers MalformedPolicyDocument) instead of being half understood.
//
// It covers the grammar of identity policies, role trust policies and
// resource policies (S3 bucket policies): Effect, Principal/NotPrincipal,
// Action/NotAction, Resource/NotResource, policy variables (${aws:…}) and
// every documented condition operator with its IfExists form and the
// ForAnyValue/ForAllValues set qualifiers. The AWS emulator and the S3 peer's
// front evaluate requests with it.
package iampolicy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Kind is what a document is attached to, which decides the elements it
// must and must not carry.
type Kind int

const (
	// Identity policies (a role's inline policies) name actions and
	// resources, never a principal.
	Identity Kind = iota
	// Trust policies (a role's AssumeRolePolicyDocument) name the
	// principals that may assume the role, never a resource.
	Trust
	// Resource policies (an S3 bucket policy) name principals and resources.
	Resource
)

// Policy is a parsed document.
type Policy struct {
	Version    string
	Statements []Statement
}

// Statement is one statement of a policy.
type Statement struct {
	Sid    string
	Effect string // "Allow" or "Deny"
	// Principal and NotPrincipal map a principal type ("AWS", "Service",
	// "Federated", "CanonicalUser", or "*" for the bare "*") to its values;
	// at most one of them is set.
	Principal, NotPrincipal map[string][]string
	// Exactly one of Action and NotAction is set.
	Action, NotAction []string
	// Resource or NotResource; neither in a trust policy.
	Resource, NotResource []string
	Conditions            []Condition
}

// Condition is one key of one operator block: `"Op": {"Key": Values}`.
type Condition struct {
	// Operator is the base operator, e.g. "StringLike".
	Operator string
	// Set is "", "ForAnyValue" or "ForAllValues".
	Set      string
	IfExists bool
	Key      string
	Values   []string
}

// MalformedError is a document IAM would refuse, with the reason.
type MalformedError struct{ Reason string }

func (e *MalformedError) Error() string { return e.Reason }

func malformed(format string, args ...any) error {
	return &MalformedError{Reason: fmt.Sprintf(format, args...)}
}

// Parse parses and validates a document of the given kind.
func Parse(doc string, kind Kind) (*Policy, error) {
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, malformed("the document is not a JSON object: %v", err)
	}
	if dec.More() {
		return nil, malformed("the document has data after its JSON object")
	}
	p := &Policy{}
	for k, v := range raw {
		switch k {
		case "Version":
			if err := json.Unmarshal(v, &p.Version); err != nil {
				return nil, malformed("Version must be a string")
			}
			if p.Version != "2012-10-17" && p.Version != "2008-10-17" {
				return nil, malformed("Version %q is not 2012-10-17 or 2008-10-17", p.Version)
			}
		case "Id":
		case "Statement":
			stmts, err := parseStatements(v, kind)
			if err != nil {
				return nil, err
			}
			p.Statements = stmts
		default:
			return nil, malformed("unknown policy element %q", k)
		}
	}
	if len(p.Statements) == 0 {
		return nil, malformed("the policy has no Statement")
	}
	return p, nil
}

func parseStatements(b json.RawMessage, kind Kind) ([]Statement, error) {
	var list []json.RawMessage
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		list = []json.RawMessage{b}
	} else if err := json.Unmarshal(b, &list); err != nil {
		return nil, malformed("Statement must be an object or a list of objects")
	}
	var out []Statement
	for i, raw := range list {
		s, err := parseStatement(raw, kind)
		if err != nil {
			return nil, malformed("statement %d: %v", i+1, err)
		}
		out = append(out, s)
	}
	return out, nil
}

func parseStatement(b json.RawMessage, kind Kind) (Statement, error) {
	var s Statement
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var raw map[string]json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return s, fmt.Errorf("not a JSON object")
	}
	for k, v := range raw {
		var err error
		switch k {
		case "Sid":
			err = json.Unmarshal(v, &s.Sid)
		case "Effect":
			err = json.Unmarshal(v, &s.Effect)
			if err == nil && s.Effect != "Allow" && s.Effect != "Deny" {
				err = fmt.Errorf("Effect %q is neither Allow nor Deny", s.Effect)
			}
		case "Action":
			s.Action, err = stringList(v)
		case "NotAction":
			s.NotAction, err = stringList(v)
		case "Resource":
			s.Resource, err = stringList(v)
		case "NotResource":
			s.NotResource, err = stringList(v)
		case "Principal":
			s.Principal, err = parsePrincipal(v)
		case "NotPrincipal":
			s.NotPrincipal, err = parsePrincipal(v)
		case "Condition":
			s.Conditions, err = parseConditions(v)
		default:
			err = fmt.Errorf("unknown element %q", k)
		}
		if err != nil {
			return s, fmt.Errorf("%s: %w", k, err)
		}
	}
	if s.Effect == "" {
		return s, fmt.Errorf("missing Effect")
	}
	if (s.Action == nil) == (s.NotAction == nil) {
		return s, fmt.Errorf("exactly one of Action and NotAction is required")
	}
	for _, a := range append(slices.Clone(s.Action), s.NotAction...) {
		if a != "*" && !strings.Contains(a, ":") {
			return s, fmt.Errorf("action %q must be prefixed by its service, e.g. s3:GetObject", a)
		}
	}
	hasPrincipal := s.Principal != nil || s.NotPrincipal != nil
	hasResource := s.Resource != nil || s.NotResource != nil
	switch {
	case s.Principal != nil && s.NotPrincipal != nil:
		return s, fmt.Errorf("Principal and NotPrincipal exclude each other")
	case s.Resource != nil && s.NotResource != nil:
		return s, fmt.Errorf("Resource and NotResource exclude each other")
	case kind == Identity && hasPrincipal:
		return s, fmt.Errorf("an identity policy must not specify a principal")
	case kind == Identity && !hasResource:
		return s, fmt.Errorf("missing Resource or NotResource")
	case kind == Trust && hasResource:
		return s, fmt.Errorf("a trust policy must not specify a resource (prohibited field Resource)")
	case kind != Identity && !hasPrincipal:
		return s, fmt.Errorf("missing Principal or NotPrincipal")
	case kind == Resource && !hasResource:
		return s, fmt.Errorf("missing Resource or NotResource")
	}
	return s, nil
}

// stringList reads a string or a list of strings (numbers and booleans are
// taken in their JSON text, as IAM does for condition values).
func stringList(b json.RawMessage) ([]string, error) {
	var any_ any
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&any_); err != nil {
		return nil, err
	}
	scalar := func(v any) (string, bool) {
		switch x := v.(type) {
		case string:
			return x, true
		case json.Number:
			return x.String(), true
		case bool:
			if x {
				return "true", true
			}
			return "false", true
		}
		return "", false
	}
	if s, ok := scalar(any_); ok {
		return []string{s}, nil
	}
	list, ok := any_.([]any)
	if !ok {
		return nil, fmt.Errorf("expected a string or a list of strings")
	}
	out := make([]string, 0, len(list))
	for _, v := range list {
		s, ok := scalar(v)
		if !ok {
			return nil, fmt.Errorf("expected a string or a list of strings")
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("an empty list matches nothing")
	}
	return out, nil
}

var principalTypes = []string{"AWS", "Service", "Federated", "CanonicalUser"}

func parsePrincipal(b json.RawMessage) (map[string][]string, error) {
	var star string
	if json.Unmarshal(b, &star) == nil {
		if star != "*" {
			return nil, fmt.Errorf("a principal given as a string must be \"*\"")
		}
		return map[string][]string{"*": {"*"}}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("expected \"*\" or an object of principal types")
	}
	out := map[string][]string{}
	for k, v := range m {
		if !slices.Contains(principalTypes, k) {
			return nil, fmt.Errorf("unknown principal type %q", k)
		}
		l, err := stringList(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = l
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("empty principal")
	}
	return out, nil
}

func parseConditions(b json.RawMessage) ([]Condition, error) {
	var ops map[string]map[string]json.RawMessage
	if err := json.Unmarshal(b, &ops); err != nil {
		return nil, fmt.Errorf("expected {\"Operator\": {\"key\": values}}")
	}
	var out []Condition
	for full, keys := range ops {
		c, err := parseOperator(full)
		if err != nil {
			return nil, err
		}
		for key, raw := range keys {
			vals, err := stringList(raw)
			if err != nil {
				return nil, fmt.Errorf("%s %s: %w", full, key, err)
			}
			cc := c
			cc.Key, cc.Values = key, vals
			if err := cc.validate(); err != nil {
				return nil, fmt.Errorf("%s %s: %w", full, key, err)
			}
			out = append(out, cc)
		}
	}
	// Map order is random; keep evaluation and errors reproducible.
	slices.SortFunc(out, func(a, b Condition) int {
		return strings.Compare(a.Operator+a.Set+a.Key, b.Operator+b.Set+b.Key)
	})
	return out, nil
}

// operators are the base condition operators IAM documents.
var operators = map[string]bool{
	"StringEquals": true, "StringNotEquals": true, "StringEqualsIgnoreCase": true, "StringNotEqualsIgnoreCase": true,
	"StringLike": true, "StringNotLike": true,
	"NumericEquals": true, "NumericNotEquals": true, "NumericLessThan": true, "NumericLessThanEquals": true,
	"NumericGreaterThan": true, "NumericGreaterThanEquals": true,
	"DateEquals": true, "DateNotEquals": true, "DateLessThan": true, "DateLessThanEquals": true,
	"DateGreaterThan": true, "DateGreaterThanEquals": true,
	"Bool": true, "BinaryEquals": true, "IpAddress": true, "NotIpAddress": true,
	"ArnEquals": true, "ArnLike": true, "ArnNotEquals": true, "ArnNotLike": true,
	"Null": true,
}

func parseOperator(full string) (Condition, error) {
	var c Condition
	op := full
	if set, rest, ok := strings.Cut(op, ":"); ok {
		if set != "ForAnyValue" && set != "ForAllValues" {
			return c, fmt.Errorf("unknown condition set operator %q in %q", set, full)
		}
		c.Set, op = set, rest
	}
	if base, ok := strings.CutSuffix(op, "IfExists"); ok && base != "Null" {
		c.IfExists, op = true, base
	}
	if !operators[op] {
		return c, fmt.Errorf("unknown condition operator %q", full)
	}
	c.Operator = op
	return c, nil
}

// Decision is the outcome of an evaluation.
type Decision int

const (
	// ImplicitDeny: no statement allows the request.
	ImplicitDeny Decision = iota
	// Allow: a statement allows it and none denies it.
	Allow
	// ExplicitDeny: a statement denies it.
	ExplicitDeny
)

func (d Decision) String() string {
	switch d {
	case Allow:
		return "allowed"
	case ExplicitDeny:
		return "explicitly denied"
	}
	return "implicitly denied"
}

// Principal is who makes a request: Type "AWS" with an ARN (or an account
// id), "Service" with a service principal such as vmie.amazonaws.com.
type Principal struct {
	Type, ID string
}

// Request is what a policy is evaluated against.
type Request struct {
	Action string
	// Resource is the ARN acted on; empty for a trust policy's AssumeRole.
	Resource  string
	Principal Principal
	// Context holds the condition keys of the request; names are
	// case-insensitive, values are lists (one element for single-valued
	// keys).
	Context map[string][]string
}

func (r Request) value(key string) ([]string, bool) {
	for k, v := range r.Context {
		if strings.EqualFold(k, key) {
			return v, true
		}
	}
	return nil, false
}

// Evaluate decides req against the documents together: an explicit Deny in
// any of them wins, else an Allow in any, else the implicit deny.
func Evaluate(req Request, docs ...*Policy) Decision {
	d := ImplicitDeny
	for _, p := range docs {
		if p == nil {
			continue
		}
		for i := range p.Statements {
			s := &p.Statements[i]
			if !s.matches(req) {
				continue
			}
			if s.Effect == "Deny" {
				return ExplicitDeny
			}
			d = Allow
		}
	}
	return d
}

// Allowed is Evaluate(req, docs...) == Allow.
func Allowed(req Request, docs ...*Policy) bool { return Evaluate(req, docs...) == Allow }

func (s *Statement) matches(req Request) bool {
	switch {
	case s.Action != nil && !anyMatch(s.Action, req.Action, true, req):
		return false
	case s.NotAction != nil && anyMatch(s.NotAction, req.Action, true, req):
		return false
	}
	if req.Resource != "" {
		switch {
		case s.Resource != nil && !anyMatch(s.Resource, req.Resource, false, req):
			return false
		case s.NotResource != nil && anyMatch(s.NotResource, req.Resource, false, req):
			return false
		}
	}
	switch {
	case s.Principal != nil && !principalMatches(s.Principal, req.Principal):
		return false
	case s.NotPrincipal != nil && principalMatches(s.NotPrincipal, req.Principal):
		return false
	}
	for _, c := range s.Conditions {
		if !c.holds(req) {
			return false
		}
	}
	return true
}

func principalMatches(p map[string][]string, who Principal) bool {
	if _, star := p["*"]; star {
		return true
	}
	for _, v := range p[who.Type] {
		switch {
		case v == "*" || v == who.ID:
			return true
		case who.Type == "AWS" && accountOf(v) != "" && accountOf(v) == accountOf(who.ID) && isAccountPrincipal(v):
			// An account id, or its root ARN, stands for every principal
			// of the account.
			return true
		}
	}
	return false
}

func isAccountPrincipal(v string) bool {
	return !strings.HasPrefix(v, "arn:") || strings.HasSuffix(v, ":root")
}

// accountOf is the account id of an ARN or a bare 12-digit id.
func accountOf(v string) string {
	if !strings.HasPrefix(v, "arn:") {
		if len(v) == 12 && strings.Trim(v, "0123456789") == "" {
			return v
		}
		return ""
	}
	f := strings.SplitN(v, ":", 6)
	if len(f) < 6 {
		return ""
	}
	return f[4]
}

// anyMatch matches v against IAM patterns (* and ?, with policy variables
// substituted); actions compare case-insensitively.
func anyMatch(patterns []string, v string, fold bool, req Request) bool {
	for _, p := range patterns {
		p, ok := substitute(p, req)
		if !ok {
			continue
		}
		if fold {
			p, v = strings.ToLower(p), strings.ToLower(v)
		}
		if Wildcard(p, v) {
			return true
		}
	}
	return false
}

// substitute replaces policy variables ${key} with the request's value; a
// variable whose key the request lacks makes the pattern match nothing.
// ${*}, ${?} and ${$} stand for the literal characters.
func substitute(p string, req Request) (string, bool) {
	if !strings.Contains(p, "${") {
		return p, true
	}
	var b strings.Builder
	for {
		i := strings.Index(p, "${")
		if i < 0 {
			b.WriteString(p)
			return b.String(), true
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			b.WriteString(p)
			return b.String(), true
		}
		b.WriteString(p[:i])
		key := p[i+2 : i+j]
		switch key {
		case "*", "?", "$":
			// The literal character, marked so that Wildcard does not
			// read it as a wildcard.
			b.WriteString("\x00" + key)
		default:
			v, ok := req.value(key)
			if !ok || len(v) != 1 {
				return "", false
			}
			b.WriteString(v[0])
		}
		p = p[i+j+1:]
	}
}

// Wildcard matches an IAM pattern, where '*' spans any run of characters
// ('/' and ':' included) and '?' one character; "\x00c" is the literal c.
func Wildcard(p, v string) bool {
	if !strings.ContainsAny(p, "*?\x00") {
		return p == v
	}
	type tok struct {
		c       byte
		literal bool
	}
	var toks []tok
	for i := 0; i < len(p); i++ {
		if p[i] == 0 && i+1 < len(p) {
			toks = append(toks, tok{p[i+1], true})
			i++
			continue
		}
		toks = append(toks, tok{p[i], false})
	}
	n := len(v)
	prev := make([]bool, n+1)
	prev[0] = true
	for _, t := range toks {
		cur := make([]bool, n+1)
		star := t.c == '*' && !t.literal
		if star {
			cur[0] = prev[0]
		}
		for j := 1; j <= n; j++ {
			switch {
			case star:
				cur[j] = prev[j] || cur[j-1]
			case t.c == '?' && !t.literal:
				cur[j] = prev[j-1]
			default:
				cur[j] = prev[j-1] && t.c == v[j-1]
			}
		}
		prev = cur
	}
	return prev[n]
}
