package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rehost/rehost/pkg/awsregion"
)

// SSM, CloudFormation, EC2, EBS direct, IAM, KMS and Service Quotas are
// reached without SDK clients, whose packages weighed more than 8 MB of the
// product binary (EC2's alone linked some 800 operations) for the few
// dozen operations the target calls. A request here is the service's own
// wire protocol (SSM, KMS, Service Quotas: AWS JSON 1.1; CloudFormation,
// EC2 and IAM: AWS Query; EBS direct: REST-JSON), signed with
// SigV4 by the SDK's signer (linked anyway by every other client), sent
// with the same HTTP client, credentials and region as the SDK clients,
// and never retried here (Target.call retries, as for every AWS call).
//
// Errors take the SDK clients' shapes: a *smithy.OperationError around an
// *awshttp.ResponseError around a *smithy.GenericAPIError for an answer
// with an AWS error code, a *smithyhttp.RequestSendError for a request no
// answer came to. So transient() classifies them, apiCode and apiMessage
// read them, and users read them, as those of the SDK clients.

// wire sends one service's requests.
type wire struct {
	service  string // the SDK's service id, which error messages name
	signing  string // the service of the SigV4 scope
	endpoint string
	region   string
	creds    sdk.CredentialsProvider
	http     sdk.HTTPClient
	signer   *v4.Signer
}

// maxAnswer bounds an answer read into memory (a page of stack events, a
// command's output are far smaller).
const maxAnswer = 16 << 20

// unsignedHash is the payload hash of a body SigV4 does not cover.
const unsignedHash = "UNSIGNED-PAYLOAD"

// newWire reaches a service at endpoint, or, when that is empty, at the
// configuration's base endpoint (AWS_ENDPOINT_URL) or the region's
// endpoint, as the SDK clients do.
func newWire(ac sdk.Config, service, signing, endpoint string) *wire {
	if endpoint == "" && ac.BaseEndpoint != nil {
		endpoint = *ac.BaseEndpoint
	}
	if endpoint == "" {
		endpoint = "https://" + signing + "." + ac.Region + "." + awsregion.DNSSuffix(ac.Region)
	}
	return &wire{service: service, signing: signing, endpoint: endpoint, region: ac.Region, creds: ac.Credentials,
		http: ac.HTTPClient, signer: v4.NewSigner()}
}

// newIAMWire reaches IAM, a global service: at endpoint or the base
// endpoint when one is set, signed for the configuration's region (as the
// SDK client does there); else at the partition's global endpoint, signed
// for the partition's global region (iam.amazonaws.com and us-east-1 in
// aws), as the SDK's endpoint rules say.
func newIAMWire(ac sdk.Config, endpoint string) *wire {
	w := newWire(ac, "IAM", "iam", endpoint)
	if endpoint != "" || ac.BaseEndpoint != nil {
		return w
	}
	w.region = awsregion.GlobalRegion(ac.Region)
	switch awsregion.Partition(ac.Region) {
	case "aws":
		w.endpoint = "https://iam.amazonaws.com"
	case "aws-us-gov":
		w.endpoint = "https://iam.us-gov.amazonaws.com"
	default:
		w.endpoint = "https://iam." + w.region + "." + awsregion.DNSSuffix(ac.Region)
	}
	return w
}

// post sends body with header and returns the answer's body; a non-2xx
// answer becomes the error apiErr reads from it.
func (w *wire) post(ctx context.Context, op string, header http.Header, body []byte,
	apiErr func(*http.Response, []byte) (code, msg, requestID string)) ([]byte, error) {
	sum := sha256.Sum256(body)
	resp, err := w.send(ctx, http.MethodPost, "", nil, header, bytes.NewReader(body), hex.EncodeToString(sum[:]), apiErr)
	if err == nil {
		defer resp.Body.Close()
		var b []byte
		if b, err = io.ReadAll(io.LimitReader(resp.Body, maxAnswer)); err == nil {
			return b, nil
		}
		err = fmt.Errorf("read the answer: %w", err)
	}
	return nil, &smithy.OperationError{ServiceID: w.service, OperationName: op, Err: err}
}

// send makes one request of method at the endpoint's path and query, its
// body signed as payloadHash (hex SHA-256, or UNSIGNED-PAYLOAD), and
// returns a 2xx answer for the caller to read and close; any other answer
// is an error apiErr reads the code and message of.
func (w *wire) send(ctx context.Context, method, path string, query url.Values, header http.Header, body io.Reader, payloadHash string,
	apiErr func(*http.Response, []byte) (code, msg, requestID string)) (*http.Response, error) {
	if w.creds == nil {
		return nil, errors.New("no AWS credentials found (give an access key, a profile or an instance role)")
	}
	creds, err := w.creds.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("failed to retrieve credentials: %w", err)
	}
	u, err := url.Parse(w.endpoint)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q: not a URL with a host", w.endpoint)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	if u.Path == "" {
		u.Path = "/"
	}
	u.RawQuery = query.Encode()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if n := header.Get("Content-Length"); n != "" {
		req.ContentLength, _ = strconv.ParseInt(n, 10, 64)
		req.Header.Del("Content-Length")
	}
	if payloadHash == unsignedHash {
		// Signed as the header says: the body streams unhashed (over TLS).
		req.Header.Set("X-Amz-Content-Sha256", payloadHash)
	}
	if err := w.signer.SignHTTP(ctx, creds, req, payloadHash, w.signing, w.region, time.Now().UTC()); err != nil {
		return nil, fmt.Errorf("sign the request: %w", err)
	}
	resp, err := w.http.Do(req)
	if err != nil {
		return nil, &smithyhttp.RequestSendError{Err: err}
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("read the answer: %w", err)
	}
	code, msg, rid := apiErr(resp, b)
	if code == "" {
		code = http.StatusText(resp.StatusCode)
		msg = strings.TrimSpace(string(b[:min(len(b), 512)]))
	}
	if rid == "" {
		rid = resp.Header.Get("X-Amzn-Requestid")
	}
	fault := smithy.FaultClient
	if resp.StatusCode >= 500 {
		fault = smithy.FaultServer
	}
	return nil, &awshttp.ResponseError{RequestID: rid, ResponseError: &smithyhttp.ResponseError{
		Response: &smithyhttp.Response{Response: resp}, Err: &smithy.GenericAPIError{Code: code, Message: msg, Fault: fault}}}
}

// jsonCall sends one AWS JSON 1.1 operation (X-Amz-Target: prefix.op) and
// decodes its answer into out.
func (w *wire) jsonCall(ctx context.Context, prefix, op string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	h := http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amz-Target": {prefix + "." + op}}
	b, err := w.post(ctx, op, h, body, jsonError)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &smithy.OperationError{ServiceID: w.service, OperationName: op, Err: fmt.Errorf("decode the answer: %w", err)}
	}
	return nil
}

// JSONAPI is a service of the AWS JSON 1.1 protocol as the target uses it:
// SSM (command.go), KMS and Service Quotas (preflight.go).
type JSONAPI interface {
	// Call sends operation op with in as its JSON request and decodes the
	// service's answer into out. An answer with an AWS error code is an
	// error that smithy.APIError reads, as the SDK client's.
	Call(ctx context.Context, op string, in, out any) error
}

// jsonClient is a JSON 1.1 service over its wire protocol; prefix is its
// X-Amz-Target's (AmazonSSM, TrentService, ServiceQuotasV20190624).
type jsonClient struct {
	w      *wire
	prefix string
}

func (c jsonClient) Call(ctx context.Context, op string, in, out any) error {
	return c.w.jsonCall(ctx, c.prefix, op, in, out)
}

// pages lists a paged JSON 1.1 operation: in, then in with the token of
// the page before as tokenKey (KMS's Marker, Service Quotas' NextToken),
// until an answer names no next page. Each page is decoded into a fresh
// P and given to read, which returns the next page's token. Each page is
// one call under the target's retry policy; a token answered twice ends
// the listing, as the SDK's paginators do.
func pages[P any](ctx context.Context, t *Target, c JSONAPI, op string, in map[string]string, tokenKey string, read func(*P) string) error {
	in = maps.Clone(in)
	for {
		var page P
		if err := t.call(ctx, op, func(ctx context.Context) error {
			page = *new(P) // decoding appends to slices
			return c.Call(ctx, op, in, &page)
		}); err != nil {
			return err
		}
		next := read(&page)
		if next == "" || next == in[tokenKey] {
			return nil
		}
		in[tokenKey] = next
	}
}

// jsonError reads an AWS JSON error: its type from X-Amzn-Errortype or
// the body's __type (or code), without a namespace (…#Code) or a URI
// suffix (Code:…).
func jsonError(resp *http.Response, b []byte) (code, msg, requestID string) {
	var e struct {
		Type    string `json:"__type"`
		Code    string `json:"code"`
		Message string `json:"message"`
		Upper   string `json:"Message"`
	}
	_ = json.Unmarshal(b, &e)
	code = resp.Header.Get("X-Amzn-Errortype")
	if code == "" {
		code = e.Type
	}
	if code == "" {
		code = e.Code
	}
	if i := strings.IndexByte(code, ':'); i >= 0 {
		code = code[:i]
	}
	if i := strings.IndexByte(code, '#'); i >= 0 {
		code = code[i+1:]
	}
	if e.Message == "" {
		e.Message = e.Upper
	}
	return code, e.Message, ""
}

// QueryAPI is a service of the AWS Query protocol as the target uses it:
// CloudFormation's actions (stack.go), EC2's (ec2query.go, instance.go),
// IAM's role actions (setup.go, preflight.go).
type QueryAPI interface {
	// Query sends action with its parameters (Version is added) and
	// decodes the action's result element of the answer (CloudFormation's
	// and IAM's <ActionResult>, EC2's <ActionResponse>) into out; nil
	// ignores it.
	// An answer with an AWS error code is an error that smithy.APIError
	// reads, as the SDK client's.
	Query(ctx context.Context, action string, params url.Values, out any) error
}

// queryClient is a Query service over its wire protocol.
type queryClient struct {
	w       *wire
	version string // the API version, such as 2010-05-15
	result  string // the suffix of the result element's name
}

func (c queryClient) Query(ctx context.Context, action string, params url.Values, out any) error {
	form := url.Values{"Action": {action}, "Version": {c.version}}
	for k, v := range params {
		form[k] = v
	}
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}}
	b, err := c.w.post(ctx, action, h, []byte(form.Encode()), queryError)
	if err != nil || out == nil {
		return err
	}
	if err := decodeResult(b, action+c.result, out); err != nil {
		return &smithy.OperationError{ServiceID: c.w.service, OperationName: action, Err: fmt.Errorf("decode the answer: %w", err)}
	}
	return nil
}

// decodeResult decodes the first element named name into out.
func decodeResult(b []byte, name string, out any) error {
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.Token()
		if err != nil {
			return fmt.Errorf("no %s element: %w", name, err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == name {
			return d.DecodeElement(out, &se)
		}
	}
}

// queryError reads an AWS Query error: <ErrorResponse><Error><Code>…, or
// EC2's <Response><Errors><Error><Code>….
func queryError(_ *http.Response, b []byte) (code, msg, requestID string) {
	var e struct {
		Code         string `xml:"Error>Code"`
		Message      string `xml:"Error>Message"`
		RequestID    string `xml:"RequestId"`
		EC2Code      string `xml:"Errors>Error>Code"`
		EC2Message   string `xml:"Errors>Error>Message"`
		EC2RequestID string `xml:"RequestID"`
	}
	_ = xml.Unmarshal(b, &e)
	if e.Code == "" {
		return e.EC2Code, e.EC2Message, e.EC2RequestID
	}
	return e.Code, e.Message, e.RequestID
}
