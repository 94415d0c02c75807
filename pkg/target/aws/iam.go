package aws

import (
	"context"
	"net/url"
	"strconv"
)

// IAM's actions as registration (setup.go) and account preflight use them,
// over the Query protocol (wire.go). Each call is retried under the
// target's policy as op, except putRolePolicy, whose caller waits out
// IAM's propagation with a policy of its own.

// iamRole is a role as GetRole and CreateRole answer it.
type iamRole struct {
	Arn string
	// AssumeRolePolicyDocument is URL-encoded, as IAM returns documents.
	AssumeRolePolicyDocument string
}

// trustPolicy is the role's trust policy, decoded (as IAM sent it when it
// does not decode).
func (r iamRole) trustPolicy() string {
	doc, err := url.QueryUnescape(r.AssumeRolePolicyDocument)
	if err != nil {
		return r.AssumeRolePolicyDocument
	}
	return doc
}

func (t *Target) getRole(ctx context.Context, name string) (iamRole, error) {
	var out struct{ Role iamRole }
	err := t.call(ctx, "GetRole", func(ctx context.Context) error {
		return t.iam.Query(ctx, "GetRole", url.Values{"RoleName": {name}}, &out)
	})
	return out.Role, err
}

// createRole creates a role that trust lets be assumed, tagged
// created-by=rehost.
func (t *Target) createRole(ctx context.Context, name, trust, description string) (iamRole, error) {
	var out struct{ Role iamRole }
	q := url.Values{"RoleName": {name}, "AssumeRolePolicyDocument": {trust}, "Description": {description},
		"Tags.member.1.Key": {"created-by"}, "Tags.member.1.Value": {"rehost"}}
	err := t.call(ctx, "CreateRole", func(ctx context.Context) error {
		return t.iam.Query(ctx, "CreateRole", q, &out)
	})
	return out.Role, err
}

// getRolePolicy returns a role's inline policy, decoded ("" when it does
// not decode).
func (t *Target) getRolePolicy(ctx context.Context, role, policy string) (string, error) {
	var out struct{ PolicyDocument string }
	err := t.call(ctx, "GetRolePolicy", func(ctx context.Context) error {
		return t.iam.Query(ctx, "GetRolePolicy", url.Values{"RoleName": {role}, "PolicyName": {policy}}, &out)
	})
	if err != nil {
		return "", err
	}
	doc, _ := url.QueryUnescape(out.PolicyDocument)
	return doc, nil
}

// putRolePolicy sends PutRolePolicy once.
func (t *Target) putRolePolicy(ctx context.Context, role, policy, doc string) error {
	return t.iam.Query(ctx, "PutRolePolicy", url.Values{"RoleName": {role}, "PolicyName": {policy}, "PolicyDocument": {doc}}, nil)
}

// evaluation is one result of IAM's policy simulator.
type evaluation struct {
	EvalActionName, EvalResourceName string
	EvalDecision                     string // allowed, explicitDeny or implicitDeny
}

// simulatePrincipalPolicy evaluates source's identity policies for each
// action on resource, every page of the answer.
func (t *Target) simulatePrincipalPolicy(ctx context.Context, source, resource string, actions []string) ([]evaluation, error) {
	q := url.Values{"PolicySourceArn": {source}, "ResourceArns.member.1": {resource}}
	for i, a := range actions {
		q.Set("ActionNames.member."+strconv.Itoa(i+1), a)
	}
	type answer struct {
		EvaluationResults []evaluation `xml:"EvaluationResults>member"`
		IsTruncated       bool
		Marker            string
	}
	var all []evaluation
	for {
		var page answer
		if err := t.call(ctx, "SimulatePrincipalPolicy", func(ctx context.Context) error {
			page = answer{} // decoding appends to a slice
			return t.iam.Query(ctx, "SimulatePrincipalPolicy", q, &page)
		}); err != nil {
			return nil, err
		}
		all = append(all, page.EvaluationResults...)
		if !page.IsTruncated || page.Marker == "" || page.Marker == q.Get("Marker") {
			return all, nil
		}
		q.Set("Marker", page.Marker)
	}
}
