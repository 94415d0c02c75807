package emulator

import (
	"strconv"
	"strings"

	"github.com/rehost/rehost/internal/lab/iampolicy"
)

// importRole is the VM Import service role as an import task assumes it:
// every call the task makes to S3, KMS and EC2 is authorised by the role's
// inline policies, as AWS authorises the calls VM Import makes with the
// role's credentials.
type importRole struct {
	name, arn, account string
	docs               []*iampolicy.Policy
	// secure is whether the task reaches S3 over TLS (aws:SecureTransport).
	secure bool
}

// vmie is the service principal of VM Import.
var vmie = iampolicy.Principal{Type: "Service", ID: "vmie.amazonaws.com"}

// assumeRoleLocked evaluates the role's trust policy for VM Import (with
// external id vmimport and the account as source); ok is false when the
// role is missing or may not be assumed. A stored policy that no longer
// parses denies everything: evaluation fails closed.
func (e *Emulator) assumeRoleLocked(name string) (*importRole, bool) {
	r, ok := e.st.Roles[name]
	if !ok {
		return nil, false
	}
	trust, err := iampolicy.Parse(r.TrustPolicy, iampolicy.Trust)
	if err != nil {
		return nil, false
	}
	req := iampolicy.Request{Action: "sts:AssumeRole", Principal: vmie, Context: map[string][]string{
		"sts:ExternalId": {"vmimport"}, "aws:SourceAccount": {e.cfg.AccountID},
	}}
	if !iampolicy.Allowed(req, trust) {
		return nil, false
	}
	ir := &importRole{name: name, arn: e.roleARN(r), account: e.cfg.AccountID, secure: strings.HasPrefix(e.cfg.S3Endpoint, "https:")}
	for _, doc := range r.Policies {
		p, err := iampolicy.Parse(doc, iampolicy.Identity)
		if err != nil {
			p = denyAll
		}
		ir.docs = append(ir.docs, p)
	}
	return ir, true
}

var denyAll = &iampolicy.Policy{Statements: []iampolicy.Statement{{Effect: "Deny", Action: []string{"*"}, Resource: []string{"*"}}}}

// may reports whether the role's policies allow action on resource.
func (r *importRole) may(e *Emulator, action, resource string) bool {
	return iampolicy.Allowed(r.request(e, action, resource), r.docs...)
}

// request is the role's call of action on resource, with the context keys
// AWS sets on a call VM Import makes with the role's credentials.
func (r *importRole) request(e *Emulator, action, resource string) iampolicy.Request {
	now := e.clock.Now().UTC()
	return iampolicy.Request{
		Action: action, Resource: resource,
		Principal: iampolicy.Principal{Type: "AWS", ID: r.arn},
		Context: map[string][]string{
			"aws:PrincipalArn":     {r.arn},
			"aws:PrincipalAccount": {r.account},
			"aws:PrincipalType":    {"AssumedRole"},
			"aws:CalledVia":        {vmie.ID},
			"aws:SecureTransport":  {strconv.FormatBool(r.secure)},
			"aws:CurrentTime":      {now.Format("2006-01-02T15:04:05Z")},
			"aws:EpochTime":        {strconv.FormatInt(now.Unix(), 10)},
		},
	}
}

// mayAll reports whether the role may do every one of actions on resource.
func (r *importRole) mayAll(e *Emulator, resource string, actions ...string) bool {
	for _, a := range actions {
		if !r.may(e, a, resource) {
			return false
		}
	}
	return true
}

// ARNs of the resources an import touches, in the region's partition.
func (e *Emulator) s3ARN(bucket, key string) string {
	arn := "arn:" + e.partition() + ":s3:::" + bucket
	if key != "" {
		arn += "/" + strings.TrimPrefix(key, "/")
	}
	return arn
}

func (e *Emulator) ec2ARN(kind string) string {
	return "arn:" + e.partition() + ":ec2:" + e.cfg.Region + "::" + kind + "/*"
}

// kmsKeyARN turns a key id, key ARN, alias name or alias ARN into an ARN of
// this account and region.
func (e *Emulator) kmsKeyARN(id string) string {
	switch {
	case strings.HasPrefix(id, "arn:"):
		return id
	case strings.HasPrefix(id, "alias/"):
		return "arn:" + e.partition() + ":kms:" + e.cfg.Region + ":" + e.cfg.AccountID + ":" + id
	}
	return "arn:" + e.partition() + ":kms:" + e.cfg.Region + ":" + e.cfg.AccountID + ":key/" + id
}
