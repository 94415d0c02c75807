package emulator

import (
	"encoding/json"
	"fmt"
	"strings"
)

// policyDoc is the subset of the IAM policy grammar the emulator evaluates:
// Allow and Deny statements with Action/NotAction, Resource, Principal and
// StringEquals/StringLike conditions.
type policyDoc struct {
	Version   string      `json:"Version"`
	Statement []statement `json:"Statement"`
}

type statement struct {
	Effect    string                           `json:"Effect"`
	Action    stringList                       `json:"Action"`
	NotAction stringList                       `json:"NotAction"`
	Resource  stringList                       `json:"Resource"`
	Principal principal                        `json:"Principal"`
	Condition map[string]map[string]stringList `json:"Condition"`
}

// stringList accepts a JSON string or array of strings.
type stringList []string

func (s *stringList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("expected a string or a list of strings: %w", err)
	}
	*s = many
	return nil
}

// principal accepts "*" or {"Service": …, "AWS": …}.
type principal map[string]stringList

func (p *principal) UnmarshalJSON(b []byte) error {
	var star string
	if err := json.Unmarshal(b, &star); err == nil {
		*p = principal{"*": {star}}
		return nil
	}
	var m map[string]stringList
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*p = m
	return nil
}

// statements accepts a single statement object or an array, as IAM does.
func (d *policyDoc) UnmarshalJSON(b []byte) error {
	var raw struct {
		Version   string          `json:"Version"`
		Statement json.RawMessage `json:"Statement"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	d.Version = raw.Version
	if len(raw.Statement) > 0 && raw.Statement[0] == '{' {
		var s statement
		if err := json.Unmarshal(raw.Statement, &s); err != nil {
			return err
		}
		d.Statement = []statement{s}
		return nil
	}
	return json.Unmarshal(raw.Statement, &d.Statement)
}

func parsePolicy(doc string) (*policyDoc, error) {
	var d policyDoc
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return nil, err
	}
	if len(d.Statement) == 0 {
		return nil, fmt.Errorf("policy has no statement")
	}
	for _, s := range d.Statement {
		if s.Effect != "Allow" && s.Effect != "Deny" {
			return nil, fmt.Errorf("statement effect %q is neither Allow nor Deny", s.Effect)
		}
	}
	return &d, nil
}

// request is what one statement is matched against.
type request struct {
	action    string
	resource  string            // empty for a trust policy
	service   string            // principal service, for a trust policy
	condition map[string]string // context keys, lower-case names
}

// allows reports whether the documents together allow req: some Allow
// statement matches and no Deny statement does.
func allows(docs []*policyDoc, req request) bool {
	allowed := false
	for _, d := range docs {
		for _, s := range d.Statement {
			if !s.matches(req) {
				continue
			}
			if s.Effect == "Deny" {
				return false
			}
			allowed = true
		}
	}
	return allowed
}

func (s statement) matches(req request) bool {
	switch {
	case len(s.Action) > 0:
		if !anyMatch(s.Action, req.action, true) {
			return false
		}
	case len(s.NotAction) > 0:
		if anyMatch(s.NotAction, req.action, true) {
			return false
		}
	default:
		return false
	}
	if req.resource != "" && !anyMatch(s.Resource, req.resource, false) {
		return false
	}
	if req.service != "" {
		if _, star := s.Principal["*"]; !star && !anyMatch(s.Principal["Service"], req.service, false) {
			return false
		}
	}
	for op, keys := range s.Condition {
		for key, want := range keys {
			got, ok := req.condition[strings.ToLower(key)]
			if !ok {
				return false
			}
			switch op {
			case "StringEquals":
				if !contains(want, got) {
					return false
				}
			case "StringLike":
				if !anyMatch(want, got, false) {
					return false
				}
			default:
				// An operator the emulator does not evaluate cannot be
				// proven satisfied.
				return false
			}
		}
	}
	return true
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// anyMatch matches v against IAM wildcard patterns (* and ?); actions
// compare case-insensitively.
func anyMatch(patterns []string, v string, fold bool) bool {
	for _, p := range patterns {
		if fold {
			p, v = strings.ToLower(p), strings.ToLower(v)
		}
		if wildcard(p, v) {
			return true
		}
	}
	return false
}

// wildcard matches an IAM pattern, where '*' spans any run of characters
// ('/' included) and '?' one character.
func wildcard(p, v string) bool {
	if !strings.ContainsAny(p, "*?") {
		return p == v
	}
	m, n := len(p), len(v)
	prev := make([]bool, n+1)
	prev[0] = true
	for i := 1; i <= m; i++ {
		cur := make([]bool, n+1)
		if p[i-1] == '*' {
			cur[0] = prev[0]
		}
		for j := 1; j <= n; j++ {
			switch p[i-1] {
			case '*':
				cur[j] = prev[j] || cur[j-1]
			case '?':
				cur[j] = prev[j-1]
			default:
				cur[j] = prev[j-1] && p[i-1] == v[j-1]
			}
		}
		prev = cur
	}
	return prev[n]
}
