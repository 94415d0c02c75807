package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/rehost/rehost/pkg/awsregion"
	"github.com/rehost/rehost/pkg/sigv4"
)

// maxBody bounds a request body: the largest legitimate one is a 512 KiB
// PutSnapshotBlock.
const maxBody = 4 << 20

// services the emulator answers, by the SigV4 scope's service name.
var services = []string{"ec2", "sts", "iam", "ebs", "kms", "servicequotas", "cloudformation", "ssm"}

// ServeHTTP verifies the request's SigV4 signature as AWS does (payload
// hash, clock skew, scope date, region and service) and routes it by the
// scope's service.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_emulator/") {
		e.serveDebug(w, r)
		return
	}
	if strings.HasPrefix(r.URL.Path, "/cfn-signal/") {
		// Authorised by the unguessable token in the URL, as AWS's
		// presigned handle URLs are by their signature.
		e.serveSignal(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		http.Error(w, "read request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxBody {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
		return
	}
	service := scopeService(r)
	caller, err := e.authenticate(r, body, service)
	if err != nil {
		e.authError(w, service, err)
		return
	}
	switch service {
	case "ec2":
		e.serveQuery(w, r, body, ec2Protocol, e.ec2Actions())
	case "sts":
		e.serveQuery(w, r, body, stsProtocol, e.stsActions(caller))
	case "iam":
		e.serveQuery(w, r, body, iamProtocol, e.iamActions())
	case "cloudformation":
		e.serveQuery(w, r, body, cfnProtocol, e.cfnActions())
	case "ebs":
		e.serveEBS(w, r, body)
	case "kms":
		e.serveJSON(w, r, body, kmsPrefix, e.kmsActions())
	case "servicequotas":
		e.serveJSON(w, r, body, quotasPrefix, e.quotaActions())
	case "ssm":
		e.serveSSM(w, r, body)
	}
}

// scopeService is the service of the request's credential scope, or the
// one its path suggests when it carries none (for the error's protocol).
func scopeService(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if h := r.Header.Get("Authorization"); h != "" {
		if _, rest, ok := strings.Cut(h, "Credential="); ok {
			cred, _, _ = strings.Cut(rest, ",")
		}
	}
	if f := strings.Split(cred, "/"); len(f) == 5 && slices.Contains(services, f[3]) {
		return f[3]
	}
	if strings.HasPrefix(r.URL.Path, "/snapshots") {
		return "ebs"
	}
	return "ec2"
}

// authenticate verifies the signature with the account's key or a
// session key AssumeRole issued, and returns the caller's ARN. IAM is a
// global service: AWS signs it for the partition's global region, the SDK
// for the client's region when the endpoint is overridden; both are taken.
func (e *Emulator) authenticate(r *http.Request, body []byte, service string) (string, error) {
	var sess *session
	v := &sigv4.Verifier{
		Secret: func(id string) (string, bool) {
			if id == e.cfg.AccessKeyID {
				return e.cfg.SecretAccessKey, true
			}
			if sess = e.session(id); sess != nil {
				return sess.secret, true
			}
			return "", false
		},
		Region:          e.cfg.Region,
		Services:        services,
		UnsignedPayload: service == "ebs" && r.Method == http.MethodPut,
		Now:             e.clock.Now,
	}
	if service == "iam" {
		v.Region = ""
	}
	cred, err := v.Verify(r, body)
	if err != nil {
		return "", err
	}
	if service == "iam" && cred.Region != e.cfg.Region && cred.Region != awsregion.GlobalRegion(e.cfg.Region) {
		return "", &sigv4.Error{Kind: sigv4.WrongScope, Message: fmt.Sprintf("Credential should be scoped to a valid region, not '%s'. ", cred.Region)}
	}
	switch {
	case sess == nil && cred.SessionToken == "":
		return e.rootARN(), nil
	case sess == nil || cred.SessionToken != sess.token:
		// A session token with the account's long-term key, or one that
		// is not the key's own.
		return "", &sigv4.Error{Kind: sigv4.UnknownKey, Message: "The security token included in the request is invalid."}
	case !e.clock.Now().Before(sess.expires):
		return "", &sigv4.Error{Kind: sigv4.Expired, Message: "The security token included in the request is expired"}
	}
	return sess.arn, nil
}

// authError answers a failed verification in the protocol of the service.
func (e *Emulator) authError(w http.ResponseWriter, service string, err error) {
	var se *sigv4.Error
	if !errors.As(err, &se) {
		se = &sigv4.Error{Kind: sigv4.BadSignature, Message: err.Error()}
	}
	switch service {
	case "ebs", "kms", "servicequotas", "ssm":
		typ := "InvalidSignatureException"
		switch se.Kind {
		case sigv4.UnknownKey:
			typ = "UnrecognizedClientException"
		case sigv4.Missing:
			typ = "MissingAuthenticationTokenException"
		}
		writeJSONError(w, http.StatusForbidden, typ, se.Message, "")
	case "ec2":
		code, msg := se.Code(), se.Message
		switch se.Kind {
		case sigv4.UnknownKey, sigv4.BadSignature, sigv4.PayloadMismatch:
			code, msg = "AuthFailure", "AWS was not able to validate the provided access credentials"
		case sigv4.WrongScope:
			code = "AuthFailure"
		case sigv4.Skewed, sigv4.Expired:
			code = "RequestExpired"
		}
		e.writeEC2Error(w, &apiError{Status: http.StatusUnauthorized, Code: code, Message: msg})
	default:
		proto := iamProtocol
		if service == "cloudformation" {
			proto = cfnProtocol
		}
		writeQueryError(w, proto, &apiError{Status: http.StatusForbidden, Code: se.Code(), Message: se.Message})
	}
}

// apiError is an error answered to the client with an AWS error code.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func badRequest(code, format string, args ...any) *apiError {
	return &apiError{Status: http.StatusBadRequest, Code: code, Message: fmt.Sprintf(format, args...)}
}

type queryProtocol int

const (
	ec2Protocol queryProtocol = iota
	stsProtocol
	iamProtocol
	cfnProtocol
)

func (p queryProtocol) xmlns() string {
	switch p {
	case ec2Protocol:
		return "http://ec2.amazonaws.com/doc/2016-11-15/"
	case stsProtocol:
		return "https://sts.amazonaws.com/doc/2011-06-15/"
	case cfnProtocol:
		return "http://cloudformation.amazonaws.com/doc/2010-05-15/"
	default:
		return "https://iam.amazonaws.com/doc/2010-05-08/"
	}
}

// queryAction handles one Action of a query protocol. It returns the
// result: a struct whose fields encoding/xml writes as the children of the
// response's result element (nil for none).
type queryAction func(p params) (any, error)

// ec2Response is an EC2 query answer: the result's fields beside the
// request id.
type ec2Response struct {
	XMLName   xml.Name
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
	Result    []byte `xml:",innerxml"`
}

// queryResponse is an IAM or STS answer: the result in <ActionResult>.
type queryResponse struct {
	XMLName xml.Name
	Xmlns   string `xml:"xmlns,attr"`
	Result  struct {
		XMLName xml.Name
		Inner   []byte `xml:",innerxml"`
	}
	RequestID string `xml:"ResponseMetadata>RequestId"`
}

// children encodes v's fields without an enclosing element.
func children(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	var b bytes.Buffer
	const wrap = "r"
	if err := xml.NewEncoder(&b).EncodeElement(v, xml.StartElement{Name: xml.Name{Local: wrap}}); err != nil {
		return nil, err
	}
	out := b.Bytes()
	return out[len("<"+wrap+">") : len(out)-len("</"+wrap+">")], nil
}

func (e *Emulator) serveQuery(w http.ResponseWriter, r *http.Request, body []byte, proto queryProtocol, actions map[string]queryAction) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		e.writeError(w, proto, badRequest("MalformedQueryString", "the request body is not form-encoded: %v", err))
		return
	}
	for k, v := range r.URL.Query() {
		if _, ok := form[k]; !ok {
			form[k] = v
		}
	}
	p := params(form)
	action := p.get("Action")
	h, ok := actions[action]
	if !ok {
		e.writeError(w, proto, badRequest("InvalidAction", "The action %s is not valid for this web service.", action))
		return
	}
	if e.denied(action) {
		code := "AccessDenied"
		if proto == ec2Protocol {
			code = "UnauthorizedOperation"
		}
		e.writeError(w, proto, &apiError{Status: http.StatusForbidden, Code: code, Message: fmt.Sprintf(
			"User: arn:%s:iam::%s:user/rehost is not authorized to perform: %s because no identity-based policy allows it", e.partition(), e.cfg.AccountID, action)})
		return
	}
	if proto == ec2Protocol && p.get("DryRun") == "true" {
		e.writeError(w, proto, &apiError{Status: http.StatusPreconditionFailed, Code: "DryRunOperation", Message: "Request would have succeeded, but DryRun flag is set."})
		return
	}
	if err := e.delay(r.Context(), action); err != nil {
		return
	}
	res, err := h(p)
	var inner []byte
	if err == nil {
		inner, err = children(res)
	}
	if err != nil {
		ae, ok := err.(*apiError)
		if !ok {
			ae = &apiError{Status: http.StatusInternalServerError, Code: "InternalError", Message: err.Error()}
		}
		e.writeError(w, proto, ae)
		return
	}
	rid := requestID()
	var doc any
	name := xml.Name{Local: action + "Response"}
	if proto == ec2Protocol {
		doc = ec2Response{XMLName: name, Xmlns: proto.xmlns(), RequestID: rid, Result: inner}
	} else {
		q := queryResponse{XMLName: name, Xmlns: proto.xmlns(), RequestID: rid}
		q.Result.XMLName, q.Result.Inner = xml.Name{Local: action + "Result"}, inner
		doc = q
	}
	w.Header().Set("X-Amzn-Requestid", rid)
	writeXML(w, http.StatusOK, doc)
}

// delay waits out the configured delay of an operation (Config.Delays).
func (e *Emulator) delay(ctx context.Context, op string) error {
	d := e.cfg.Delays[op]
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func writeXML(w http.ResponseWriter, status int, doc any) {
	b, err := xml.Marshal(doc)
	if err != nil {
		http.Error(w, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	io.WriteString(w, xml.Header)
	w.Write(b)
}

func (e *Emulator) writeError(w http.ResponseWriter, proto queryProtocol, ae *apiError) {
	if proto == ec2Protocol {
		e.writeEC2Error(w, ae)
		return
	}
	writeQueryError(w, proto, ae)
}

type errorBody struct {
	Type    string `xml:"Type,omitempty"`
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

func (e *Emulator) writeEC2Error(w http.ResponseWriter, ae *apiError) {
	writeXML(w, ae.Status, struct {
		XMLName   xml.Name    `xml:"Response"`
		Errors    []errorBody `xml:"Errors>Error"`
		RequestID string      `xml:"RequestID"`
	}{Errors: []errorBody{{Code: ae.Code, Message: ae.Message}}, RequestID: requestID()})
}

func writeQueryError(w http.ResponseWriter, proto queryProtocol, ae *apiError) {
	typ := "Sender"
	if ae.Status >= 500 {
		typ = "Receiver"
	}
	writeXML(w, ae.Status, struct {
		XMLName   xml.Name  `xml:"ErrorResponse"`
		Xmlns     string    `xml:"xmlns,attr"`
		Error     errorBody `xml:"Error"`
		RequestID string    `xml:"RequestId"`
	}{Xmlns: proto.xmlns(), Error: errorBody{Type: typ, Code: ae.Code, Message: ae.Message}, RequestID: requestID()})
}

func writeJSONError(w http.ResponseWriter, status int, typ, msg, reason string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", typ)
	w.WriteHeader(status)
	m := map[string]string{"Message": msg}
	if reason != "" {
		m["Reason"] = reason
	}
	json.NewEncoder(w).Encode(m)
}

// ParseDelays reads per-operation delays in the form
// "DeregisterImage=2s,DeleteSnapshot=500ms" (Config.Delays).
func ParseDelays(s string) (map[string]time.Duration, error) {
	out := map[string]time.Duration{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		op, d, ok := strings.Cut(part, "=")
		dur, err := time.ParseDuration(strings.TrimSpace(d))
		if !ok || strings.TrimSpace(op) == "" || err != nil || dur < 0 {
			return nil, fmt.Errorf("delay %q: want OPERATION=DURATION, e.g. DeregisterImage=2s", part)
		}
		out[strings.TrimSpace(op)] = dur
	}
	return out, nil
}

// params is a query request's form with helpers for its list and structure
// encoding (Name.N, Name.N.Member, Name.N.Value.M).
type params url.Values

func (p params) get(k string) string { return url.Values(p).Get(k) }

func (p params) has(k string) bool { _, ok := p[k]; return ok }

func (p params) boolean(k string) bool { return p.get(k) == "true" }

// list returns the values of prefix.1, prefix.2, … in index order.
func (p params) list(prefix string) []string {
	var out []string
	for _, i := range p.indexes(prefix) {
		out = append(out, p.get(prefix+"."+strconv.Itoa(i)))
	}
	return out
}

// indexes returns the sorted distinct N of keys prefix.N or prefix.N.….
func (p params) indexes(prefix string) []int {
	seen := map[int]bool{}
	for k := range p {
		rest, ok := strings.CutPrefix(k, prefix+".")
		if !ok {
			continue
		}
		n, _, _ := strings.Cut(rest, ".")
		if i, err := strconv.Atoi(n); err == nil && i > 0 {
			seen[i] = true
		}
	}
	out := make([]int, 0, len(seen))
	for i := range seen {
		out = append(out, i)
	}
	slices.Sort(out)
	return out
}

// sub returns the parameters under prefix. with the prefix removed.
func (p params) sub(prefix string) params {
	out := params{}
	for k, v := range p {
		if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
			out[rest] = v
		}
	}
	return out
}

// items returns sub(prefix.N) for each N in order.
func (p params) items(prefix string) []params {
	var out []params
	for _, i := range p.indexes(prefix) {
		out = append(out, p.sub(prefix+"."+strconv.Itoa(i)))
	}
	return out
}

func (p params) tags(prefix string) []Tag {
	var out []Tag
	for _, it := range p.items(prefix) {
		out = append(out, Tag{Key: it.get("Key"), Value: it.get("Value")})
	}
	return out
}

type filter struct {
	name   string
	values []string
}

func (p params) filters(prefix string) []filter {
	var out []filter
	for _, it := range p.items(prefix) {
		out = append(out, filter{name: it.get("Name"), values: it.list("Value")})
	}
	return out
}

// xmlTag is an EC2 tag as the query protocol writes it.
type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func xmlTags(tags []Tag) []xmlTag {
	out := make([]xmlTag, len(tags))
	for i, t := range tags {
		out[i] = xmlTag(t)
	}
	return out
}
