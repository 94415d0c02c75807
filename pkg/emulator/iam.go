package emulator

import (
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"time"
)

func (e *Emulator) stsActions() map[string]queryAction {
	return map[string]queryAction{
		"GetCallerIdentity": func(p params, x *xmlWriter) error {
			x.text("Arn", "arn:aws:iam::"+e.cfg.AccountID+":root")
			x.text("UserId", e.cfg.AccountID)
			x.text("Account", e.cfg.AccountID)
			return nil
		},
	}
}

func (e *Emulator) iamActions() map[string]queryAction {
	return map[string]queryAction{
		"CreateRole":       e.createRole,
		"GetRole":          e.getRole,
		"DeleteRole":       e.deleteRole,
		"PutRolePolicy":    e.putRolePolicy,
		"GetRolePolicy":    e.getRolePolicy,
		"DeleteRolePolicy": e.deleteRolePolicy,
		"ListRolePolicies": e.listRolePolicies,
	}
}

var roleNameRE = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)

func noSuchRole(name string) *apiError {
	return &apiError{Status: http.StatusNotFound, Code: "NoSuchEntity", Message: fmt.Sprintf("The role with name %s cannot be found.", name)}
}

func validationError(format string, args ...any) *apiError {
	return badRequest("ValidationError", format, args...)
}

func malformedPolicy(err error) *apiError {
	return badRequest("MalformedPolicyDocument", "Syntax errors in policy: %v", err)
}

func (e *Emulator) createRole(p params, x *xmlWriter) error {
	if e.cfg.DenyCreateRole {
		return &apiError{Status: http.StatusForbidden, Code: "AccessDenied", Message: fmt.Sprintf(
			"User: arn:aws:iam::%s:user/rehost is not authorized to perform: iam:CreateRole on resource: arn:aws:iam::%s:role/%s because no identity-based policy allows the iam:CreateRole action",
			e.cfg.AccountID, e.cfg.AccountID, p.get("RoleName"))}
	}
	name := p.get("RoleName")
	if !roleNameRE.MatchString(name) {
		return validationError("1 validation error detected: Value '%s' at 'roleName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]+", name)
	}
	doc := p.get("AssumeRolePolicyDocument")
	if _, err := parsePolicy(doc); err != nil {
		return malformedPolicy(err)
	}
	rolePath := p.get("Path")
	if rolePath == "" {
		rolePath = "/"
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.Roles[name]; ok {
		return &apiError{Status: http.StatusConflict, Code: "EntityAlreadyExists", Message: fmt.Sprintf("Role with name %s already exists.", name)}
	}
	r := &Role{Name: name, ID: "AROA" + randomUpper(17), Path: rolePath, Description: p.get("Description"),
		Created: e.clock.Now().UTC(), TrustPolicy: doc, Policies: map[string]string{}}
	e.st.Roles[name] = r
	e.saveLocked()
	e.writeRole(x, r)
	return nil
}

func (e *Emulator) writeRole(x *xmlWriter, r *Role) {
	x.open("Role")
	x.text("Path", r.Path)
	x.text("RoleName", r.Name)
	x.text("RoleId", r.ID)
	x.text("Arn", "arn:aws:iam::"+e.cfg.AccountID+":role"+r.Path+r.Name)
	x.text("CreateDate", r.Created.Format(time.RFC3339))
	// IAM returns policy documents URL-encoded (RFC 3986).
	x.text("AssumeRolePolicyDocument", uriEncode(r.TrustPolicy, true))
	x.opt("Description", r.Description)
	x.text("MaxSessionDuration", "3600")
	x.close("Role")
}

func (e *Emulator) getRole(p params, x *xmlWriter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.st.Roles[p.get("RoleName")]
	if !ok {
		return noSuchRole(p.get("RoleName"))
	}
	e.writeRole(x, r)
	return nil
}

func (e *Emulator) deleteRole(p params, x *xmlWriter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	name := p.get("RoleName")
	r, ok := e.st.Roles[name]
	if !ok {
		return noSuchRole(name)
	}
	if len(r.Policies) > 0 {
		return &apiError{Status: http.StatusConflict, Code: "DeleteConflict", Message: "Cannot delete entity, must delete policies first."}
	}
	delete(e.st.Roles, name)
	e.saveLocked()
	return nil
}

func (e *Emulator) putRolePolicy(p params, x *xmlWriter) error {
	name, pol, doc := p.get("RoleName"), p.get("PolicyName"), p.get("PolicyDocument")
	if pol == "" {
		return validationError("1 validation error detected: Value null at 'policyName' failed to satisfy constraint: Member must not be null")
	}
	if _, err := parsePolicy(doc); err != nil {
		return malformedPolicy(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.st.Roles[name]
	if !ok {
		return noSuchRole(name)
	}
	if r.Policies == nil {
		r.Policies = map[string]string{}
	}
	r.Policies[pol] = doc
	e.saveLocked()
	return nil
}

func (e *Emulator) getRolePolicy(p params, x *xmlWriter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	name, pol := p.get("RoleName"), p.get("PolicyName")
	r, ok := e.st.Roles[name]
	if !ok {
		return noSuchRole(name)
	}
	doc, ok := r.Policies[pol]
	if !ok {
		return &apiError{Status: http.StatusNotFound, Code: "NoSuchEntity", Message: fmt.Sprintf("The role policy with name %s cannot be found.", pol)}
	}
	x.text("RoleName", name)
	x.text("PolicyName", pol)
	x.text("PolicyDocument", uriEncode(doc, true))
	return nil
}

func (e *Emulator) deleteRolePolicy(p params, x *xmlWriter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	name, pol := p.get("RoleName"), p.get("PolicyName")
	r, ok := e.st.Roles[name]
	if !ok {
		return noSuchRole(name)
	}
	if _, ok := r.Policies[pol]; !ok {
		return &apiError{Status: http.StatusNotFound, Code: "NoSuchEntity", Message: fmt.Sprintf("The role policy with name %s cannot be found.", pol)}
	}
	delete(r.Policies, pol)
	e.saveLocked()
	return nil
}

func (e *Emulator) listRolePolicies(p params, x *xmlWriter) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	r, ok := e.st.Roles[p.get("RoleName")]
	if !ok {
		return noSuchRole(p.get("RoleName"))
	}
	names := make([]string, 0, len(r.Policies))
	for n := range r.Policies {
		names = append(names, n)
	}
	sort.Strings(names)
	x.open("PolicyNames")
	for _, n := range names {
		x.text("member", n)
	}
	x.close("PolicyNames")
	x.boolean("IsTruncated", false)
	return nil
}

// roleCheck is the outcome of evaluating the import role for one object.
type roleCheck int

const (
	roleOK roleCheck = iota
	roleUnusable
	objectDenied
)

// checkImportRole evaluates, as VM Import does when it assumes the role,
// whether role may be assumed by vmie.amazonaws.com with external id
// vmimport and may read bucket/key.
func (e *Emulator) checkImportRole(roleName, bucket, key string) roleCheck {
	e.mu.Lock()
	r, ok := e.st.Roles[roleName]
	var trust string
	var docs []string
	if ok {
		trust = r.TrustPolicy
		for _, d := range r.Policies {
			docs = append(docs, d)
		}
	}
	e.mu.Unlock()
	if !ok {
		return roleUnusable
	}
	td, err := parsePolicy(trust)
	if err != nil {
		return roleUnusable
	}
	if !allows([]*policyDoc{td}, request{action: "sts:AssumeRole", service: "vmie.amazonaws.com",
		condition: map[string]string{"sts:externalid": "vmimport", "aws:sourceaccount": e.cfg.AccountID}}) {
		return roleUnusable
	}
	var pds []*policyDoc
	for _, d := range docs {
		if pd, err := parsePolicy(d); err == nil {
			pds = append(pds, pd)
		}
	}
	bucketARN := "arn:aws:s3:::" + bucket
	if !allows(pds, request{action: "s3:GetBucketLocation", resource: bucketARN}) ||
		!allows(pds, request{action: "s3:ListBucket", resource: bucketARN}) {
		return roleUnusable
	}
	if !allows(pds, request{action: "s3:GetObject", resource: bucketARN + "/" + strings.TrimPrefix(key, "/")}) {
		return objectDenied
	}
	return roleOK
}
