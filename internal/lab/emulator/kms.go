package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rehost/rehost/internal/lab/iampolicy"
)

// KMS, as far as imports and preflight use it: customer managed keys with
// their key policy and grants (CreateKey, DescribeKey, GetKeyPolicy,
// PutKeyPolicy, CreateGrant, ListGrants, RevokeGrant, EnableKey,
// DisableKey), and the AWS managed keys by alias (alias/aws/ebs,
// alias/aws/s3). Whether the import role may use a key is decided as KMS
// decides: an explicit Deny of the key policy wins; a statement naming the
// role allows; a statement naming the account defers to the role's IAM
// policies; a grant to the role allows its operations.

const kmsPrefix = "TrentService"

// KMSKey is a customer managed key.
type KMSKey struct {
	ID          string    `json:"id"`
	Description string    `json:"description,omitempty"`
	Policy      string    `json:"policy"`
	Enabled     bool      `json:"enabled"`
	Created     time.Time `json:"created"`
	Grants      []Grant   `json:"grants,omitempty"`
}

// Grant is a KMS grant on a key.
type Grant struct {
	ID               string    `json:"id"`
	Name             string    `json:"name,omitempty"`
	GranteePrincipal string    `json:"granteePrincipal"`
	Operations       []string  `json:"operations"`
	Created          time.Time `json:"created"`
}

// grantOperations are the operations a grant may allow.
var grantOperations = []string{"Decrypt", "Encrypt", "GenerateDataKey", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo",
	"CreateGrant", "RetireGrant", "DescribeKey", "GenerateDataKeyPair", "GenerateDataKeyPairWithoutPlaintext", "Sign", "Verify",
	"GetPublicKey", "GenerateMac", "VerifyMac"}

func kmsNotFound(id string) *jsonError {
	return &jsonError{http.StatusBadRequest, "NotFoundException", fmt.Sprintf("Key '%s' does not exist", id)}
}

func (e *Emulator) kmsActions() map[string]jsonAction {
	return map[string]jsonAction{
		"CreateKey":    e.createKey,
		"DescribeKey":  e.describeKey,
		"GetKeyPolicy": e.getKeyPolicy,
		"PutKeyPolicy": e.putKeyPolicy,
		"CreateGrant":  e.createGrant,
		"ListGrants":   e.listGrants,
		"RevokeGrant":  e.revokeGrant,
		"EnableKey":    func(in json.RawMessage) (any, error) { return e.setKeyEnabled(in, true) },
		"DisableKey":   func(in json.RawMessage) (any, error) { return e.setKeyEnabled(in, false) },
	}
}

// defaultKeyPolicy is the key policy KMS gives a key created without one:
// the account's IAM policies decide who uses it.
func (e *Emulator) defaultKeyPolicy() string {
	return `{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow",` +
		`"Principal":{"AWS":"arn:` + e.partition() + `:iam::` + e.cfg.AccountID + `:root"},"Action":"kms:*","Resource":"*"}]}`
}

func (e *Emulator) keyARN(id string) string {
	return "arn:" + e.partition() + ":kms:" + e.cfg.Region + ":" + e.cfg.AccountID + ":key/" + id
}

func checkKeyPolicy(doc string) error {
	if _, err := iampolicy.Parse(doc, iampolicy.Resource); err != nil {
		return &jsonError{http.StatusBadRequest, "MalformedPolicyDocumentException", "The new key policy will not allow you to update the key policy in the future: " + err.Error()}
	}
	return nil
}

// keyLocked resolves a key id, key ARN or alias of this account and region.
// managed is set for an AWS managed key (by alias), which has no KMSKey.
func (e *Emulator) keyLocked(ref string) (k *KMSKey, managed bool, err error) {
	if ref == "" {
		return nil, false, &jsonError{http.StatusBadRequest, "ValidationException", "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null"}
	}
	arn := e.kmsKeyARN(ref)
	prefix := "arn:" + e.partition() + ":kms:" + e.cfg.Region + ":" + e.cfg.AccountID + ":"
	rest, ok := strings.CutPrefix(arn, prefix)
	if !ok {
		return nil, false, kmsNotFound(arn)
	}
	if strings.HasPrefix(rest, "alias/aws/") {
		return nil, true, nil
	}
	id, ok := strings.CutPrefix(rest, "key/")
	if k := e.st.Keys[id]; ok && k != nil {
		return k, false, nil
	}
	return nil, false, kmsNotFound(arn)
}

type keyMetadata struct {
	AWSAccountId string
	KeyId        string
	Arn          string
	CreationDate float64
	Enabled      bool
	Description  string
	KeyUsage     string
	KeyState     string
	Origin       string
	KeyManager   string
	KeySpec      string
}

func (e *Emulator) metadataLocked(ref string, k *KMSKey) keyMetadata {
	if k == nil {
		// An AWS managed key, by its alias.
		return keyMetadata{AWSAccountId: e.cfg.AccountID, KeyId: ref, Arn: e.kmsKeyARN(ref), Enabled: true, KeyUsage: "ENCRYPT_DECRYPT",
			KeyState: "Enabled", Origin: "AWS_KMS", KeyManager: "AWS", KeySpec: "SYMMETRIC_DEFAULT",
			Description: "Default key that protects my data when no other key is defined"}
	}
	state := "Enabled"
	if !k.Enabled {
		state = "Disabled"
	}
	return keyMetadata{AWSAccountId: e.cfg.AccountID, KeyId: k.ID, Arn: e.keyARN(k.ID), CreationDate: float64(k.Created.Unix()),
		Enabled: k.Enabled, Description: k.Description, KeyUsage: "ENCRYPT_DECRYPT", KeyState: state, Origin: "AWS_KMS",
		KeyManager: "CUSTOMER", KeySpec: "SYMMETRIC_DEFAULT"}
}

func (e *Emulator) createKey(in json.RawMessage) (any, error) {
	var req struct{ Policy, Description string }
	if err := decodeJSON(in, &req); err != nil {
		return nil, err
	}
	if req.Policy == "" {
		req.Policy = e.defaultKeyPolicy()
	}
	if err := checkKeyPolicy(req.Policy); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k := &KMSKey{ID: uuid(), Description: req.Description, Policy: req.Policy, Enabled: true, Created: e.clock.Now().UTC()}
	e.st.Keys[k.ID] = k
	e.saveLocked()
	return struct{ KeyMetadata keyMetadata }{e.metadataLocked(k.ID, k)}, nil
}

func (e *Emulator) describeKey(in json.RawMessage) (any, error) {
	var req struct{ KeyId string }
	if err := decodeJSON(in, &req); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, _, err := e.keyLocked(req.KeyId)
	if err != nil {
		return nil, err
	}
	return struct{ KeyMetadata keyMetadata }{e.metadataLocked(req.KeyId, k)}, nil
}

// customerKeyLocked is keyLocked for operations on customer managed keys
// only.
func (e *Emulator) customerKeyLocked(ref string) (*KMSKey, error) {
	k, managed, err := e.keyLocked(ref)
	if err != nil {
		return nil, err
	}
	if managed {
		return nil, &jsonError{http.StatusBadRequest, "AccessDeniedException", "this operation is not allowed on an AWS managed key"}
	}
	return k, nil
}

func (e *Emulator) getKeyPolicy(in json.RawMessage) (any, error) {
	var req struct{ KeyId, PolicyName string }
	if err := decodeJSON(in, &req); err != nil {
		return nil, err
	}
	if req.PolicyName != "" && req.PolicyName != "default" {
		return nil, &jsonError{http.StatusBadRequest, "NotFoundException", "Policy " + req.PolicyName + " does not exist"}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, err := e.customerKeyLocked(req.KeyId)
	if err != nil {
		return nil, err
	}
	return struct{ Policy, PolicyName string }{k.Policy, "default"}, nil
}

func (e *Emulator) putKeyPolicy(in json.RawMessage) (any, error) {
	var req struct{ KeyId, PolicyName, Policy string }
	if err := decodeJSON(in, &req); err != nil {
		return nil, err
	}
	if err := checkKeyPolicy(req.Policy); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, err := e.customerKeyLocked(req.KeyId)
	if err != nil {
		return nil, err
	}
	k.Policy = req.Policy
	e.saveLocked()
	return struct{}{}, nil
}

func (e *Emulator) createGrant(in json.RawMessage) (any, error) {
	var req struct {
		KeyId, GranteePrincipal, Name string
		Operations                    []string
	}
	if err := decodeJSON(in, &req); err != nil {
		return nil, err
	}
	if len(req.Operations) == 0 || req.GranteePrincipal == "" {
		return nil, &jsonError{http.StatusBadRequest, "ValidationException", "GranteePrincipal and Operations are required"}
	}
	for _, op := range req.Operations {
		if !slices.Contains(grantOperations, op) {
			return nil, &jsonError{http.StatusBadRequest, "ValidationException", fmt.Sprintf("Value '%s' at 'operations' failed to satisfy constraint: Member must satisfy enum value set: %v", op, grantOperations)}
		}
	}
	if !strings.HasPrefix(req.GranteePrincipal, "arn:") {
		return nil, &jsonError{http.StatusBadRequest, "InvalidArnException", "GranteePrincipal " + req.GranteePrincipal + " is not an ARN"}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, err := e.customerKeyLocked(req.KeyId)
	if err != nil {
		return nil, err
	}
	g := Grant{ID: strings.ReplaceAll(uuid(), "-", "") + randomHex(16), Name: req.Name, GranteePrincipal: req.GranteePrincipal,
		Operations: req.Operations, Created: e.clock.Now().UTC()}
	k.Grants = append(k.Grants, g)
	e.saveLocked()
	return struct{ GrantId, GrantToken string }{g.ID, "token-" + g.ID}, nil
}

type grantListEntry struct {
	KeyId, GrantId, Name, GranteePrincipal, IssuingAccount string
	CreationDate                                           float64
	Operations                                             []string
}

func (e *Emulator) listGrants(in json.RawMessage) (any, error) {
	var req struct {
		KeyId, Marker, GranteePrincipal string
		Limit                           int
	}
	if err := decodeJSON(in, &req); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, err := e.customerKeyLocked(req.KeyId)
	if err != nil {
		return nil, err
	}
	limit := req.Limit
	if limit <= 0 || limit > 100 {
		limit = 50
	}
	var all []grantListEntry
	for _, g := range k.Grants {
		if req.GranteePrincipal != "" && g.GranteePrincipal != req.GranteePrincipal {
			continue
		}
		all = append(all, grantListEntry{KeyId: e.keyARN(k.ID), GrantId: g.ID, Name: g.Name, GranteePrincipal: g.GranteePrincipal,
			IssuingAccount: "arn:" + e.partition() + ":iam::" + e.cfg.AccountID + ":root", CreationDate: float64(g.Created.Unix()), Operations: g.Operations})
	}
	start := 0
	if req.Marker != "" {
		i := slices.IndexFunc(all, func(g grantListEntry) bool { return g.GrantId == req.Marker })
		if i < 0 {
			return nil, &jsonError{http.StatusBadRequest, "InvalidMarkerException", "the marker is not one this service gave"}
		}
		start = i
	}
	out := struct {
		Grants     []grantListEntry
		Truncated  bool
		NextMarker string `json:",omitempty"`
	}{Grants: []grantListEntry{}}
	end := min(start+limit, len(all))
	out.Grants = append(out.Grants, all[start:end]...)
	if end < len(all) {
		out.Truncated, out.NextMarker = true, all[end].GrantId
	}
	return out, nil
}

func (e *Emulator) revokeGrant(in json.RawMessage) (any, error) {
	var req struct{ KeyId, GrantId string }
	if err := decodeJSON(in, &req); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, err := e.customerKeyLocked(req.KeyId)
	if err != nil {
		return nil, err
	}
	i := slices.IndexFunc(k.Grants, func(g Grant) bool { return g.ID == req.GrantId })
	if i < 0 {
		return nil, &jsonError{http.StatusBadRequest, "NotFoundException", "Grant " + req.GrantId + " does not exist"}
	}
	k.Grants = slices.Delete(k.Grants, i, i+1)
	e.saveLocked()
	return struct{}{}, nil
}

func (e *Emulator) setKeyEnabled(in json.RawMessage, enabled bool) (any, error) {
	var req struct{ KeyId string }
	if err := decodeJSON(in, &req); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, err := e.customerKeyLocked(req.KeyId)
	if err != nil {
		return nil, err
	}
	k.Enabled = enabled
	e.saveLocked()
	return struct{}{}, nil
}

// kmsKnown reports whether a key reference names a key of this account
// and region that VM Import can use: an AWS managed key, or an enabled
// customer managed one.
func (e *Emulator) kmsKnown(ref string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	k, managed, err := e.keyLocked(ref)
	return err == nil && (managed || k.Enabled)
}

// kmsAllows decides whether the import role may do action ("kms:Decrypt")
// with a key, as KMS decides (see the top of this file).
func (e *Emulator) kmsAllows(r *importRole, action, ref string) bool {
	e.mu.Lock()
	k, managed, err := e.keyLocked(ref)
	var policy string
	var grants []Grant
	if k != nil {
		policy, grants = k.Policy, slices.Clone(k.Grants)
	}
	enabled := k != nil && k.Enabled
	e.mu.Unlock()
	switch {
	case err != nil:
		return false
	case managed:
		// An AWS managed key's policy lets every principal of the account
		// use it through the service.
		return true
	case !enabled:
		return false
	}
	arn := e.keyARN(k.ID)
	op := strings.TrimPrefix(action, "kms:")
	for _, g := range grants {
		if g.GranteePrincipal == r.arn && slices.Contains(g.Operations, op) {
			return true
		}
	}
	doc, perr := iampolicy.Parse(policy, iampolicy.Resource)
	if perr != nil {
		return false
	}
	asRole := r.request(e, action, arn)
	switch iampolicy.Evaluate(asRole, doc) {
	case iampolicy.ExplicitDeny, iampolicy.ImplicitDeny:
		return false
	}
	// Allowed for the role: by name, or by a statement that stands for the
	// whole account, which defers to the role's IAM policies. Another
	// principal of the account tells the two apart.
	other := asRole
	other.Principal.ID = "arn:" + e.partition() + ":iam::" + e.cfg.AccountID + ":role/rehost-emulator-probe"
	if iampolicy.Evaluate(other, doc) != iampolicy.Allow {
		return true
	}
	return r.may(e, action, arn)
}
