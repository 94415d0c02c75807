// Package sigv4 verifies AWS Signature Version 4 on the server side, as AWS
// does: the signature over the canonical request, the payload hash against
// the body, the request time against the clock, the credential scope's date,
// region and service, and the expiry of presigned URLs. The AWS emulator, the
// S3 peer's front and the connector's own API all verify with it, so a
// client bug AWS would refuse is refused here too.
package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Special values of X-Amz-Content-Sha256.
const (
	UnsignedPayload          = "UNSIGNED-PAYLOAD"
	StreamingPayload         = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
	StreamingPayloadTrailer  = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
	StreamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
)

const (
	algorithm = "AWS4-HMAC-SHA256"
	timeFmt   = "20060102T150405Z"
	// MaxSkew is how far a request's time may be from the server's clock.
	MaxSkew = 15 * time.Minute
	// MaxPresignExpiry is the longest X-Amz-Expires AWS accepts (7 days).
	MaxPresignExpiry = 7 * 24 * time.Hour
)

// Kind classifies a verification failure; each server maps it to its
// protocol's error code (see Error.Code for AWS's usual ones).
type Kind int

// Failure kinds.
const (
	// Missing: no Authorization header nor presigned query.
	Missing Kind = iota + 1
	// Malformed: the Authorization header or presigned query cannot be parsed.
	Malformed
	// UnknownKey: the access key id is not known.
	UnknownKey
	// BadSignature: the signature does not match.
	BadSignature
	// Skewed: X-Amz-Date is more than MaxSkew from the server's clock.
	Skewed
	// WrongScope: the scope's date, region or service is not this server's.
	WrongScope
	// Expired: a presigned URL past its X-Amz-Expires.
	Expired
	// PayloadMismatch: X-Amz-Content-Sha256 is not the body's hash.
	PayloadMismatch
)

// Error is a failed verification.
type Error struct {
	Kind    Kind
	Message string
}

func (e *Error) Error() string { return e.Message }

// Code is the error code AWS's query and JSON services (EC2, IAM, STS,
// EBS) answer for the failure; S3 callers use S3Code.
func (e *Error) Code() string {
	switch e.Kind {
	case Missing:
		return "MissingAuthenticationToken"
	case Malformed:
		return "IncompleteSignature"
	case UnknownKey:
		return "InvalidClientTokenId"
	case Expired:
		return "ExpiredToken"
	default:
		return "SignatureDoesNotMatch"
	}
}

// S3Code is the error code S3 answers for the failure.
func (e *Error) S3Code() string {
	switch e.Kind {
	case Missing, Expired:
		return "AccessDenied"
	case Malformed, WrongScope:
		return "AuthorizationHeaderMalformed"
	case UnknownKey:
		return "InvalidAccessKeyId"
	case Skewed:
		return "RequestTimeTooSkewed"
	case PayloadMismatch:
		return "XAmzContentSHA256Mismatch"
	default:
		return "SignatureDoesNotMatch"
	}
}

func fail(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// Verifier checks requests signed for one region.
type Verifier struct {
	// Secret returns the secret access key of an access key id; ok is false
	// for an unknown (or revoked) key.
	Secret func(accessKeyID string) (secret string, ok bool)
	// Region requests must be scoped to. Empty accepts any region (a
	// global service answering for every partition's region).
	Region string
	// Services allowed in the scope; empty allows any.
	Services []string
	// S3 selects S3's rules: the path is encoded once, not twice, and the
	// payload may be UNSIGNED-PAYLOAD or a streaming (aws-chunked) mode,
	// whose chunk signatures the object store verifies.
	S3 bool
	// UnsignedPayload accepts X-Amz-Content-Sha256: UNSIGNED-PAYLOAD
	// outside S3, for the operations AWS lets clients sign that way (EBS
	// direct's PutSnapshotBlock, whose block carries its own checksum).
	UnsignedPayload bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Credential is who signed a verified request, and for what.
type Credential struct {
	AccessKeyID string
	Date        string // yyyymmdd of the scope
	Region      string
	Service     string
	// SessionToken is X-Amz-Security-Token, for the caller to check when
	// the key is temporary.
	SessionToken string
	// Presigned is true for a query-string signature.
	Presigned bool
}

type parsed struct {
	Credential
	amzDate       string
	signedHeaders []string
	signature     string
	payload       string // the hash the signature covers
	expires       time.Duration
}

// Verify checks r, whose body has been read into body (it is not read
// again), and returns the signer's credential or an *Error.
func (v *Verifier) Verify(r *http.Request, body []byte) (Credential, error) {
	p, err := v.parse(r)
	if err != nil {
		return Credential{}, err
	}
	secret, ok := v.Secret(p.AccessKeyID)
	if !ok {
		if v.S3 {
			return Credential{}, fail(UnknownKey, "The AWS Access Key Id you provided does not exist in our records.")
		}
		return Credential{}, fail(UnknownKey, "The security token included in the request is invalid.")
	}
	if err := v.checkTime(p); err != nil {
		return Credential{}, err
	}
	if err := v.checkScope(p); err != nil {
		return Credential{}, err
	}
	if err := v.checkPayload(r, body, &p); err != nil {
		return Credential{}, err
	}
	want := v.signature(r, body, p, secret)
	if !hmac.Equal([]byte(want), []byte(p.signature)) {
		return Credential{}, fail(BadSignature, "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.")
	}
	return p.Credential, nil
}

func (v *Verifier) parse(r *http.Request) (parsed, error) {
	var p parsed
	q := r.URL.Query()
	if h := r.Header.Get("Authorization"); h != "" {
		rest, ok := strings.CutPrefix(h, algorithm+" ")
		if !ok {
			return p, fail(Malformed, "Authorization header requires the %s algorithm", algorithm)
		}
		for part := range strings.SplitSeq(rest, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
			switch k {
			case "Credential":
				if err := p.scope(val); err != nil {
					return p, err
				}
			case "SignedHeaders":
				p.signedHeaders = strings.Split(val, ";")
			case "Signature":
				p.signature = val
			}
		}
		p.amzDate = r.Header.Get("X-Amz-Date")
		if p.amzDate == "" {
			p.amzDate = r.Header.Get("Date")
		}
		p.SessionToken = r.Header.Get("X-Amz-Security-Token")
	} else if q.Get("X-Amz-Algorithm") != "" {
		if q.Get("X-Amz-Algorithm") != algorithm {
			return p, fail(Malformed, "X-Amz-Algorithm must be %s", algorithm)
		}
		if err := p.scope(q.Get("X-Amz-Credential")); err != nil {
			return p, err
		}
		p.signedHeaders = strings.Split(q.Get("X-Amz-SignedHeaders"), ";")
		p.signature = q.Get("X-Amz-Signature")
		p.amzDate = q.Get("X-Amz-Date")
		p.SessionToken = q.Get("X-Amz-Security-Token")
		p.Presigned = true
		secs, err := strconv.Atoi(q.Get("X-Amz-Expires"))
		if err != nil || secs <= 0 || time.Duration(secs)*time.Second > MaxPresignExpiry {
			return p, fail(Malformed, "X-Amz-Expires must be a number of seconds from 1 to %d", int(MaxPresignExpiry.Seconds()))
		}
		p.expires = time.Duration(secs) * time.Second
	} else {
		return p, fail(Missing, "Request is missing Authentication Token")
	}
	if p.AccessKeyID == "" || p.signature == "" || len(p.signedHeaders) == 0 || p.signedHeaders[0] == "" {
		return p, fail(Malformed, "Authorization must contain Credential, SignedHeaders and Signature")
	}
	if !slices.Contains(p.signedHeaders, "host") {
		return p, fail(Malformed, "the host header must be signed")
	}
	if !sort.StringsAreSorted(p.signedHeaders) {
		return p, fail(Malformed, "SignedHeaders must be sorted")
	}
	return p, nil
}

func (p *parsed) scope(val string) error {
	f := strings.Split(val, "/")
	if len(f) != 5 || f[4] != "aws4_request" || f[0] == "" {
		return fail(Malformed, "Credential %q must be <key>/<date>/<region>/<service>/aws4_request", val)
	}
	p.AccessKeyID, p.Date, p.Region, p.Service = f[0], f[1], f[2], f[3]
	return nil
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) checkTime(p parsed) error {
	t, err := time.Parse(timeFmt, p.amzDate)
	if err != nil {
		return fail(Malformed, "X-Amz-Date %q is not in the form %s", p.amzDate, timeFmt)
	}
	now := v.now().UTC()
	if p.Presigned {
		if now.Before(t.Add(-MaxSkew)) {
			return fail(Skewed, "Request is not yet valid (X-Amz-Date %s is in the future)", p.amzDate)
		}
		if now.After(t.Add(p.expires)) {
			return fail(Expired, "Request has expired")
		}
		return nil
	}
	if d := now.Sub(t); d > MaxSkew || d < -MaxSkew {
		if v.S3 {
			return fail(Skewed, "The difference between the request time and the current time is too large.")
		}
		return fail(Skewed, "Signature expired: %s is now earlier than %s (%s - 15 min.)", p.amzDate,
			now.Add(-MaxSkew).Format(timeFmt), now.Format(timeFmt))
	}
	return nil
}

func (v *Verifier) checkScope(p parsed) error {
	if len(p.amzDate) < 8 || p.Date != p.amzDate[:8] {
		return fail(WrongScope, "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%.8s'", p.Date, p.amzDate)
	}
	if v.Region != "" && p.Region != v.Region {
		if v.S3 {
			return fail(WrongScope, "The authorization header is malformed; the region '%s' is wrong; expecting '%s'", p.Region, v.Region)
		}
		return fail(WrongScope, "Credential should be scoped to a valid region, not '%s'. ", p.Region)
	}
	if len(v.Services) > 0 && !slices.Contains(v.Services, p.Service) {
		return fail(WrongScope, "Credential should be scoped to correct service: '%s'. ", strings.Join(v.Services, "' or '"))
	}
	return nil
}

// checkPayload sets p.payload to the hash the signature covers: the body's,
// unless S3 allows a special value.
func (v *Verifier) checkPayload(r *http.Request, body []byte, p *parsed) error {
	sum := sha256.Sum256(body)
	actual := hex.EncodeToString(sum[:])
	claimed := r.Header.Get("X-Amz-Content-Sha256")
	switch {
	case p.Presigned && v.S3:
		p.payload = UnsignedPayload
		return nil
	case claimed == "":
		if v.S3 {
			return fail(Malformed, "Missing required header for this request: x-amz-content-sha256")
		}
		p.payload = actual
		return nil
	case claimed == UnsignedPayload && v.UnsignedPayload:
		p.payload = claimed
		return nil
	case claimed == UnsignedPayload || strings.HasPrefix(claimed, "STREAMING-"):
		if !v.S3 {
			return fail(PayloadMismatch, "x-amz-content-sha256 %q is accepted only by S3", claimed)
		}
		p.payload = claimed
		return nil
	case claimed != actual:
		return fail(PayloadMismatch, "The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	p.payload = actual
	return nil
}

func (v *Verifier) signature(r *http.Request, body []byte, p parsed, secret string) string {
	var hdrs strings.Builder
	for _, h := range p.signedHeaders {
		var val string
		switch h {
		case "host":
			val = r.Host
		case "content-length":
			val = strconv.Itoa(len(body))
			if r.ContentLength > 0 && len(body) == 0 {
				val = strconv.FormatInt(r.ContentLength, 10)
			}
		default:
			vals := r.Header.Values(h)
			for i := range vals {
				vals[i] = strings.Join(strings.Fields(vals[i]), " ")
			}
			val = strings.Join(vals, ",")
		}
		hdrs.WriteString(h + ":" + val + "\n")
	}
	path := r.URL.EscapedPath()
	if path == "" {
		path = "/"
	}
	if v.S3 {
		path = uriEncode(r.URL.Path, false)
		if path == "" {
			path = "/"
		}
	} else {
		path = uriEncode(path, false)
	}
	q := r.URL.Query()
	q.Del("X-Amz-Signature")
	canonical := strings.Join([]string{
		r.Method, path, canonicalQuery(q), hdrs.String(), strings.Join(p.signedHeaders, ";"), p.payload,
	}, "\n")
	scope := p.Date + "/" + p.Region + "/" + p.Service + "/aws4_request"
	ch := sha256.Sum256([]byte(canonical))
	toSign := algorithm + "\n" + p.amzDate + "\n" + scope + "\n" + hex.EncodeToString(ch[:])
	k := hmacSHA256([]byte("AWS4"+secret), p.Date)
	k = hmacSHA256(k, p.Region)
	k = hmacSHA256(k, p.Service)
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
