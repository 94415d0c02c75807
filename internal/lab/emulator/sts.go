package emulator

import (
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/rehost/rehost/internal/lab/iampolicy"
)

// session is a set of temporary credentials AssumeRole issued. Sessions
// live in memory only: a restarted emulator has forgotten them, as if
// they had expired.
type session struct {
	secret, token string
	arn           string // arn:…:sts::account:assumed-role/name/session
	expires       time.Time
}

func (e *Emulator) rootARN() string {
	return "arn:" + e.partition() + ":iam::" + e.cfg.AccountID + ":root"
}

// session is the session of access key id, nil when it is no session's.
func (e *Emulator) session(id string) *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sessions[id]
}

// stsActions answer for caller, the ARN the request was signed as.
func (e *Emulator) stsActions(caller string) map[string]queryAction {
	return map[string]queryAction{
		"GetCallerIdentity": func(p params) (any, error) {
			return struct {
				Arn     string
				UserId  string
				Account string
			}{caller, e.cfg.AccountID, e.cfg.AccountID}, nil
		},
		"AssumeRole": func(p params) (any, error) { return e.assumeRole(caller, p) },
	}
}

type assumedCredentials struct {
	AccessKeyId     string
	SecretAccessKey string
	SessionToken    string
	Expiration      string
}

// assumeRole issues temporary credentials for a role whose trust policy
// lets caller assume it, as STS does: the role must exist, its trust policy
// must allow sts:AssumeRole for the caller (with sts:ExternalId when given),
// and the duration must lie within 15 minutes and the role's maximum.
func (e *Emulator) assumeRole(caller string, p params) (any, error) {
	arn, name := p.get("RoleArn"), p.get("RoleSessionName")
	if !roleSessionRE.MatchString(name) {
		return nil, validationError("1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]*", name)
	}
	dur := 3600
	if s := p.get("DurationSeconds"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 900 || n > 3600 {
			return nil, validationError("The requested DurationSeconds exceeds the MaxSessionDuration set for this role.")
		}
		dur = n
	}
	denied := &apiError{Status: http.StatusForbidden, Code: "AccessDenied", Message: fmt.Sprintf(
		"User: %s is not authorized to perform: sts:AssumeRole on resource: %s", caller, arn)}
	e.mu.Lock()
	defer e.mu.Unlock()
	var role *Role
	for _, r := range e.st.Roles {
		if e.roleARN(r) == arn {
			role = r
		}
	}
	if role == nil {
		return nil, denied
	}
	trust, err := iampolicy.Parse(role.TrustPolicy, iampolicy.Trust)
	if err != nil {
		return nil, denied
	}
	ctx := map[string][]string{}
	if id := p.get("ExternalId"); id != "" {
		ctx["sts:ExternalId"] = []string{id}
	}
	if !iampolicy.Allowed(iampolicy.Request{Action: "sts:AssumeRole", Principal: iampolicy.Principal{Type: "AWS", ID: caller}, Context: ctx}, trust) {
		return nil, denied
	}
	s := &session{secret: randomHex(20), token: "FwoG" + randomHex(48),
		arn:     "arn:" + e.partition() + ":sts::" + e.cfg.AccountID + ":assumed-role/" + role.Name + "/" + name,
		expires: e.clock.Now().Add(time.Duration(dur) * time.Second)}
	id := "ASIA" + randomUpper(16)
	if e.sessions == nil {
		e.sessions = map[string]*session{}
	}
	e.sessions[id] = s
	return struct {
		Credentials     assumedCredentials
		AssumedRoleUser struct{ Arn, AssumedRoleId string }
	}{
		Credentials: assumedCredentials{AccessKeyId: id, SecretAccessKey: s.secret, SessionToken: s.token,
			Expiration: s.expires.UTC().Format(time.RFC3339)},
		AssumedRoleUser: struct{ Arn, AssumedRoleId string }{s.arn, role.ID + ":" + name},
	}, nil
}

var roleSessionRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
