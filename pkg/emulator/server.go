package emulator

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// maxBody bounds a request body: the largest legitimate one is a 512 KiB
// PutSnapshotBlock.
const maxBody = 4 << 20

// ServeHTTP routes by the SigV4 credential scope's service (ec2, sts, iam,
// ebs), after checking the access key and the signature.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_emulator/") {
		e.serveDebug(w, r)
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
	auth := parseAuth(r.Header.Get("Authorization"))
	service := auth.service
	if service == "" {
		if strings.HasPrefix(r.URL.Path, "/snapshots") {
			service = "ebs"
		} else {
			service = "ec2"
		}
	}
	if code, msg := e.authenticate(r, body, auth); code != "" {
		e.authError(w, service, code, msg)
		return
	}
	switch service {
	case "ec2":
		e.serveQuery(w, r, body, ec2Protocol, e.ec2Actions())
	case "sts":
		e.serveQuery(w, r, body, stsProtocol, e.stsActions())
	case "iam":
		e.serveQuery(w, r, body, iamProtocol, e.iamActions())
	case "ebs":
		e.serveEBS(w, r, body)
	default:
		e.authError(w, "ec2", "InvalidClientTokenId", "service "+service+" is not emulated")
	}
}

type sigv4 struct {
	accessKey, date, region, service string
	signedHeaders                    []string
	signature                        string
}

func parseAuth(h string) sigv4 {
	var a sigv4
	rest, ok := strings.CutPrefix(h, "AWS4-HMAC-SHA256 ")
	if !ok {
		return a
	}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			f := strings.Split(v, "/")
			if len(f) == 5 && f[4] == "aws4_request" {
				a.accessKey, a.date, a.region, a.service = f[0], f[1], f[2], f[3]
			}
		case "SignedHeaders":
			a.signedHeaders = strings.Split(v, ";")
		case "Signature":
			a.signature = v
		}
	}
	return a
}

// authenticate returns an AWS error code and message, or "" when the request
// is signed by the account's key.
func (e *Emulator) authenticate(r *http.Request, body []byte, a sigv4) (string, string) {
	if a.accessKey == "" {
		return "MissingAuthenticationToken", "Request is missing Authentication Token"
	}
	if a.accessKey != e.cfg.AccessKeyID {
		return "InvalidClientTokenId", "The security token included in the request is invalid."
	}
	if e.cfg.SkipSignatureCheck {
		return "", ""
	}
	want := signature(r, body, a, e.cfg.SecretAccessKey)
	if !hmac.Equal([]byte(want), []byte(a.signature)) {
		return "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method."
	}
	return "", ""
}

// signature computes the SigV4 signature of r as the SDK signs it: the path
// escaped once more than on the wire (non-S3 services), the payload hash
// from X-Amz-Content-Sha256 when sent (UNSIGNED-PAYLOAD included), else of
// the body.
func signature(r *http.Request, body []byte, a sigv4, secret string) string {
	payload := r.Header.Get("X-Amz-Content-Sha256")
	if payload == "" {
		sum := sha256.Sum256(body)
		payload = hex.EncodeToString(sum[:])
	}
	var hdrs strings.Builder
	for _, h := range a.signedHeaders {
		var v string
		switch h {
		case "host":
			v = r.Host
		case "content-length":
			v = strconv.Itoa(len(body))
		default:
			vals := r.Header.Values(h)
			for i := range vals {
				vals[i] = strings.Join(strings.Fields(vals[i]), " ")
			}
			v = strings.Join(vals, ",")
		}
		hdrs.WriteString(h + ":" + v + "\n")
	}
	canonical := strings.Join([]string{
		r.Method,
		uriEncode(r.URL.EscapedPath(), false),
		canonicalQuery(r.URL.Query()),
		hdrs.String(),
		strings.Join(a.signedHeaders, ";"),
		payload,
	}, "\n")
	scope := a.date + "/" + a.region + "/" + a.service + "/aws4_request"
	ch := sha256.Sum256([]byte(canonical))
	toSign := "AWS4-HMAC-SHA256\n" + r.Header.Get("X-Amz-Date") + "\n" + scope + "\n" + hex.EncodeToString(ch[:])
	k := hmacSHA256([]byte("AWS4"+secret), a.date)
	k = hmacSHA256(k, a.region)
	k = hmacSHA256(k, a.service)
	k = hmacSHA256(k, "aws4_request")
	return hex.EncodeToString(hmacSHA256(k, toSign))
}

func hmacSHA256(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

func canonicalQuery(q url.Values) string {
	var parts []string
	for k, vs := range q {
		for _, v := range vs {
			parts = append(parts, uriEncode(k, true)+"="+uriEncode(v, true))
		}
	}
	sort.Strings(parts)
	return strings.Join(parts, "&")
}

// uriEncode is SigV4's URI encoding: unreserved characters stay, everything
// else is %XX; '/' stays unless encodeSlash.
func uriEncode(s string, encodeSlash bool) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' || c == '/' && !encodeSlash {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func (e *Emulator) authError(w http.ResponseWriter, service, code, msg string) {
	switch service {
	case "ebs":
		t := "UnrecognizedClientException"
		if code == "SignatureDoesNotMatch" {
			t = "InvalidSignatureException"
		}
		writeJSONError(w, http.StatusForbidden, t, msg, "")
	case "ec2":
		if code == "InvalidClientTokenId" || code == "SignatureDoesNotMatch" {
			code, msg = "AuthFailure", "AWS was not able to validate the provided access credentials"
		}
		e.writeEC2Error(w, &apiError{Status: http.StatusUnauthorized, Code: code, Message: msg})
	default:
		writeQueryError(w, &apiError{Status: http.StatusForbidden, Code: code, Message: msg})
	}
}

// apiError is an error answered to the client with an AWS error code.
type apiError struct {
	Status  int
	Code    string
	Message string
	Sender  bool
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
)

func (p queryProtocol) xmlns() string {
	switch p {
	case ec2Protocol:
		return "http://ec2.amazonaws.com/doc/2016-11-15/"
	case stsProtocol:
		return "https://sts.amazonaws.com/doc/2011-06-15/"
	default:
		return "https://iam.amazonaws.com/doc/2010-05-08/"
	}
}

// queryAction handles one Action of a query protocol, writing the result
// element's children into x.
type queryAction func(p params, x *xmlWriter) error

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
	if proto == ec2Protocol && p.get("DryRun") == "true" {
		e.writeError(w, proto, &apiError{Status: http.StatusPreconditionFailed, Code: "DryRunOperation", Message: "Request would have succeeded, but DryRun flag is set."})
		return
	}
	x := &xmlWriter{}
	if err := h(p, x); err != nil {
		ae, ok := err.(*apiError)
		if !ok {
			ae = &apiError{Status: http.StatusInternalServerError, Code: "InternalError", Message: err.Error()}
		}
		e.writeError(w, proto, ae)
		return
	}
	var out bytes.Buffer
	out.WriteString(xml.Header)
	rid := requestID()
	switch proto {
	case ec2Protocol:
		fmt.Fprintf(&out, "<%sResponse xmlns=%q><requestId>%s</requestId>%s</%sResponse>", action, proto.xmlns(), rid, x.String(), action)
	default:
		fmt.Fprintf(&out, "<%sResponse xmlns=%q><%sResult>%s</%sResult><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata></%sResponse>",
			action, proto.xmlns(), action, x.String(), action, rid, action)
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.Header().Set("X-Amzn-Requestid", rid)
	w.Write(out.Bytes())
}

func (e *Emulator) writeError(w http.ResponseWriter, proto queryProtocol, ae *apiError) {
	if proto == ec2Protocol {
		e.writeEC2Error(w, ae)
		return
	}
	writeQueryError(w, ae)
}

func (e *Emulator) writeEC2Error(w http.ResponseWriter, ae *apiError) {
	x := &xmlWriter{}
	x.open("Response")
	x.open("Errors")
	x.open("Error")
	x.text("Code", ae.Code)
	x.text("Message", ae.Message)
	x.close("Error")
	x.close("Errors")
	x.text("RequestID", requestID())
	x.close("Response")
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(ae.Status)
	io.WriteString(w, xml.Header+x.String())
}

func writeQueryError(w http.ResponseWriter, ae *apiError) {
	x := &xmlWriter{}
	x.b.WriteString(`<ErrorResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">`)
	x.open("Error")
	if ae.Status >= 500 {
		x.text("Type", "Receiver")
	} else {
		x.text("Type", "Sender")
	}
	x.text("Code", ae.Code)
	x.text("Message", ae.Message)
	x.close("Error")
	x.text("RequestId", requestID())
	x.close("ErrorResponse")
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(ae.Status)
	io.WriteString(w, xml.Header+x.String())
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
	sort.Ints(out)
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

// xmlWriter builds an XML fragment.
type xmlWriter struct{ b strings.Builder }

func (x *xmlWriter) open(name string)  { x.b.WriteString("<" + name + ">") }
func (x *xmlWriter) close(name string) { x.b.WriteString("</" + name + ">") }
func (x *xmlWriter) text(name, v string) {
	x.open(name)
	xml.EscapeText(&x.b, []byte(v))
	x.close(name)
}

// opt writes name only when v is not empty.
func (x *xmlWriter) opt(name, v string) {
	if v != "" {
		x.text(name, v)
	}
}
func (x *xmlWriter) boolean(name string, v bool) { x.text(name, strconv.FormatBool(v)) }
func (x *xmlWriter) String() string              { return x.b.String() }

func (x *xmlWriter) tagSet(tags []Tag) {
	x.open("tagSet")
	for _, t := range tags {
		x.open("item")
		x.text("key", t.Key)
		x.text("value", t.Value)
		x.close("item")
	}
	x.close("tagSet")
}
