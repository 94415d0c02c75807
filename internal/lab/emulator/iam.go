package emulator

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"time"

	"github.com/rehost/rehost/internal/lab/iampolicy"
	"github.com/rehost/rehost/pkg/awsregion"
)

func (e *Emulator) partition() string { return awsregion.Partition(e.cfg.Region) }

func (e *Emulator) iamActions() map[string]queryAction {
	return map[string]queryAction{
		"CreateRole":       e.createRole,
		"GetRole":          e.getRole,
		"DeleteRole":       e.deleteRole,
		"PutRolePolicy":    e.putRolePolicy,
		"GetRolePolicy":    e.getRolePolicy,
		"DeleteRolePolicy": e.deleteRolePolicy,
		"ListRolePolicies": e.listRolePolicies,

		"UpdateAssumeRolePolicy":  e.updateAssumeRolePolicy,
		"SimulatePrincipalPolicy": e.simulatePrincipalPolicy,
	}
}

func (e *Emulator) updateAssumeRolePolicy(p params) (any, error) {
	doc := p.get("PolicyDocument")
	if err := checkPolicy(doc, iampolicy.Trust); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.st.Roles[p.get("RoleName")]
	if !ok {
		return nil, noSuchRole(p.get("RoleName"))
	}
	r.TrustPolicy = doc
	e.saveLocked()
	return nil, nil
}

// simulatePrincipalPolicy evaluates a role's identity policies for each
// action on each resource, as IAM's policy simulator does without resource
// policies (a KMS key's policy and grants are not part of it).
func (e *Emulator) simulatePrincipalPolicy(p params) (any, error) {
	src := p.get("PolicySourceArn")
	actions, resources := p.list("ActionNames.member"), p.list("ResourceArns.member")
	if len(actions) == 0 {
		return nil, validationError("1 validation error detected: Value null at 'actionNames' failed to satisfy constraint: Member must not be null")
	}
	if len(resources) == 0 {
		resources = []string{"*"}
	}
	e.mu.Lock()
	var role *Role
	for _, r := range e.st.Roles {
		if e.roleARN(r) == src {
			role = r
		}
	}
	var docs []*iampolicy.Policy
	if role != nil {
		for _, d := range role.Policies {
			pol, err := iampolicy.Parse(d, iampolicy.Identity)
			if err != nil {
				pol = denyAll
			}
			docs = append(docs, pol)
		}
	}
	e.mu.Unlock()
	if role == nil {
		return nil, &apiError{Status: http.StatusBadRequest, Code: "NoSuchEntity", Message: "PolicySourceArn " + src + " is not a role of this account"}
	}
	type result struct {
		EvalActionName   string
		EvalResourceName string
		EvalDecision     string
	}
	var out []result
	for _, a := range actions {
		for _, res := range resources {
			d := iampolicy.Evaluate(iampolicy.Request{Action: a, Resource: res, Principal: iampolicy.Principal{Type: "AWS", ID: src},
				Context: map[string][]string{"aws:PrincipalArn": {src}, "aws:PrincipalAccount": {e.cfg.AccountID}}}, docs...)
			decision := map[iampolicy.Decision]string{iampolicy.Allow: "allowed", iampolicy.ExplicitDeny: "explicitDeny", iampolicy.ImplicitDeny: "implicitDeny"}[d]
			out = append(out, result{a, res, decision})
		}
	}
	return struct {
		EvaluationResults []result `xml:"EvaluationResults>member"`
		IsTruncated       bool
	}{out, false}, nil
}

var roleNameRE = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)

func noSuchRole(name string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: "NoSuchEntity", Message: fmt.Sprintf("The role with name %s cannot be found.", name)}
}

func validationError(format string, args ...any) *apiError {
	return badRequest("ValidationError", format, args...)
}

// checkPolicy refuses, as IAM does with MalformedPolicyDocument, a
// document that is not valid for its kind or uses an element or condition
// operator the evaluator does not know: a policy is never stored that
// could later be only half evaluated.
func checkPolicy(doc string, kind iampolicy.Kind) error {
	if _, err := iampolicy.Parse(doc, kind); err != nil {
		return badRequest("MalformedPolicyDocument", "Syntax errors in policy: %v", err)
	}
	return nil
}

type roleXML struct {
	Path                     string
	RoleName                 string
	RoleId                   string
	Arn                      string
	CreateDate               string
	AssumeRolePolicyDocument string
	Description              string `xml:",omitempty"`
	MaxSessionDuration       int
}

func (e *Emulator) roleARN(r *Role) string {
	return "arn:" + e.partition() + ":iam::" + e.cfg.AccountID + ":role" + r.Path + r.Name
}

func (e *Emulator) roleResult(r *Role) any {
	return struct{ Role roleXML }{roleXML{
		Path: r.Path, RoleName: r.Name, RoleId: r.ID, Arn: e.roleARN(r),
		CreateDate: r.Created.Format(time.RFC3339),
		// IAM returns policy documents URL-encoded (RFC 3986).
		AssumeRolePolicyDocument: uriEncode(r.TrustPolicy),
		Description:              r.Description, MaxSessionDuration: 3600,
	}}
}

func (e *Emulator) createRole(p params) (any, error) {
	if e.cfg.DenyCreateRole {
		return nil, &apiError{Status: http.StatusForbidden, Code: "AccessDenied", Message: fmt.Sprintf(
			"User: arn:%s:iam::%s:user/rehost is not authorized to perform: iam:CreateRole on resource: arn:%s:iam::%s:role/%s because no identity-based policy allows the iam:CreateRole action",
			e.partition(), e.cfg.AccountID, e.partition(), e.cfg.AccountID, p.get("RoleName"))}
	}
	name := p.get("RoleName")
	if !roleNameRE.MatchString(name) {
		return nil, validationError("1 validation error detected: Value '%s' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+", name)
	}
	doc := p.get("AssumeRolePolicyDocument")
	if err := checkPolicy(doc, iampolicy.Trust); err != nil {
		return nil, err
	}
	rolePath := p.get("Path")
	if rolePath == "" {
		rolePath = "/"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.Roles[name]; ok {
		return nil, &apiError{Status: http.StatusConflict, Code: "EntityAlreadyExists", Message: fmt.Sprintf("Role with name %s already exists.", name)}
	}
	r := &Role{Name: name, ID: "AROA" + randomUpper(17), Path: rolePath, Description: p.get("Description"),
		Created: e.clock.Now().UTC(), TrustPolicy: doc, Policies: map[string]string{}}
	e.st.Roles[name] = r
	e.saveLocked()
	return e.roleResult(r), nil
}

func (e *Emulator) getRole(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.st.Roles[p.get("RoleName")]
	if !ok {
		return nil, noSuchRole(p.get("RoleName"))
	}
	return e.roleResult(r), nil
}

func (e *Emulator) deleteRole(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	name := p.get("RoleName")
	r, ok := e.st.Roles[name]
	if !ok {
		return nil, noSuchRole(name)
	}
	if len(r.Policies) > 0 {
		return nil, &apiError{Status: http.StatusConflict, Code: "DeleteConflict", Message: "Cannot delete entity, must delete policies first."}
	}
	delete(e.st.Roles, name)
	e.saveLocked()
	return nil, nil
}

func (e *Emulator) putRolePolicy(p params) (any, error) {
	name, pol, doc := p.get("RoleName"), p.get("PolicyName"), p.get("PolicyDocument")
	if pol == "" {
		return nil, validationError("1 validation error detected: Value null at 'policyName' failed to satisfy constraint: Member must not be null")
	}
	if err := checkPolicy(doc, iampolicy.Identity); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.st.Roles[name]
	if !ok {
		return nil, noSuchRole(name)
	}
	if r.Policies == nil {
		r.Policies = map[string]string{}
	}
	r.Policies[pol] = doc
	e.saveLocked()
	return nil, nil
}

func noSuchRolePolicy(pol string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: "NoSuchEntity", Message: fmt.Sprintf("The role policy with name %s cannot be found.", pol)}
}

func (e *Emulator) getRolePolicy(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	name, pol := p.get("RoleName"), p.get("PolicyName")
	r, ok := e.st.Roles[name]
	if !ok {
		return nil, noSuchRole(name)
	}
	doc, ok := r.Policies[pol]
	if !ok {
		return nil, noSuchRolePolicy(pol)
	}
	return struct{ RoleName, PolicyName, PolicyDocument string }{name, pol, uriEncode(doc)}, nil
}

func (e *Emulator) deleteRolePolicy(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	name, pol := p.get("RoleName"), p.get("PolicyName")
	r, ok := e.st.Roles[name]
	if !ok {
		return nil, noSuchRole(name)
	}
	if _, ok := r.Policies[pol]; !ok {
		return nil, noSuchRolePolicy(pol)
	}
	delete(r.Policies, pol)
	e.saveLocked()
	return nil, nil
}

func (e *Emulator) listRolePolicies(p params) (any, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.st.Roles[p.get("RoleName")]
	if !ok {
		return nil, noSuchRole(p.get("RoleName"))
	}
	names := make([]string, 0, len(r.Policies))
	for n := range r.Policies {
		names = append(names, n)
	}
	slices.Sort(names)
	return struct {
		PolicyNames []string `xml:"PolicyNames>member"`
		IsTruncated bool
	}{names, false}, nil
}

// uriEncode is RFC 3986 percent-encoding: unreserved characters stay.
func uriEncode(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b = append(b, c)
		} else {
			b = append(b, fmt.Sprintf("%%%02X", c)...)
		}
	}
	return string(b)
}
