package s3peer

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rehost/rehost/pkg/sigv4"
)

// Bucket sub-resources the front answers itself because versitygw answers
// them with 501 Not Implemented. (Bucket policies pass through: versitygw
// stores them.)
const (
	SubEncryption = "encryption"
	SubLifecycle  = "lifecycle"
	// SubPublicAccessBlock is ?publicAccessBlock (versitygw v1.8.0: 501).
	SubPublicAccessBlock = "publicAccessBlock"
)

// Front is a reverse proxy in front of versitygw that makes the bucket's
// settings take effect as on S3, where versitygw only stores them or
// answers 501:
//
//   - It answers PUT, GET and DELETE of ?encryption, ?lifecycle and
//     ?publicAccessBlock itself, after verifying the request's SigV4
//     signature (pkg/sigv4) as S3 does.
//   - The bucket policy (stored by versitygw) is enforced: a request its
//     Deny statements match — e.g. plain HTTP to a bucket that denies
//     aws:SecureTransport false — is answered 403 AccessDenied (after its
//     signature is verified). A policy put is validated first and refused
//     with MalformedPolicy when internal/lab/iampolicy cannot evaluate it.
//   - Objects report their server-side encryption on PUT, HEAD and GET
//     (x-amz-server-side-encryption, and the KMS key of aws:kms): the one
//     requested at upload, else the bucket's default encryption.
//   - A lifecycle clock, which tests advance (Advance) and the lab runs in
//     real time, expires objects and aborts incomplete multipart uploads by
//     each rule's prefix and days.
//   - Every other request passes through unchanged and streaming, keeping
//     the Host header the client signed; versitygw verifies those.
//   - It counts requests per operation and runs injected faults on the Nth
//     request of an operation.
//
// With TLS it serves HTTPS on URL and plain HTTP on PlainURL, so that
// refusing plain HTTP can be seen; without, both are the same plain
// listener. GET /_s3peer/state (unauthenticated, test-only, like the AWS
// emulator's) lists buckets, objects and uploads for leak checks.
type Front struct {
	URL      string
	PlainURL string

	region   string
	verifier *sigv4.Verifier
	backend  *s3.Client
	root     string
	path     string // front.json: what the front recorded, kept across restarts

	srvs  []*http.Server
	proxy *httputil.ReverseProxy
	stop  chan struct{}
	wg    sync.WaitGroup

	mu       sync.Mutex
	counts   map[string]int
	log      []Request
	faults   map[faultKey]http.HandlerFunc
	st       frontState
	policies map[string]*bucketPolicy
}

// frontState is what the front persists.
type frontState struct {
	// Config holds the XML of each bucket's sub-resources.
	Config map[string]map[string][]byte `json:"config"`
	// Objects and Uploads hold the encryption requested for an object
	// ("bucket/key") or a multipart upload (by upload id).
	Objects map[string]sseRecord `json:"objects"`
	Uploads map[string]sseRecord `json:"uploads"`
	// ClockOffset is how far Advance moved the lifecycle clock.
	ClockOffset time.Duration `json:"clockOffset"`
}

type sseRecord struct {
	Algorithm string `json:"algorithm"`
	KMSKeyID  string `json:"kmsKeyId,omitempty"`
	BucketKey bool   `json:"bucketKey,omitempty"`
}

// Request is one request seen by the front.
type Request struct {
	Op         string // S3 operation name, e.g. "UploadPart"
	N          int    // 1-based occurrence of Op
	Method     string
	Bucket     string
	Key        string
	Query      url.Values
	Header     http.Header
	Faulted    bool // an injected fault answered it
	PartNumber string
	TLS        bool
}

type faultKey struct {
	op string
	n  int
}

type frontOptions struct {
	tls              bool
	pair             tls.Certificate
	listen           string
	plainListen      string
	lifecycleEvery   time.Duration
	statePath        string
	backendTransport http.RoundTripper
}

func newFront(s *Server, o frontOptions) (*Front, error) {
	target, err := url.Parse(s.BackendURL)
	if err != nil {
		return nil, err
	}
	f := &Front{
		region:   s.Region,
		root:     s.Dir,
		path:     o.statePath,
		counts:   map[string]int{},
		faults:   map[faultKey]http.HandlerFunc{},
		policies: map[string]*bucketPolicy{},
		stop:     make(chan struct{}),
		verifier: &sigv4.Verifier{
			Secret: func(id string) (string, bool) { return s.SecretAccessKey, id == s.AccessKeyID },
			Region: s.Region, Services: []string{"s3"}, S3: true,
		},
	}
	if err := f.load(); err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.MaxIdleConnsPerHost = 64
	if s.CAPool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: s.CAPool}
	}
	f.backend = s3.New(s3.Options{
		Region: s.Region, BaseEndpoint: aws.String(s.BackendURL), UsePathStyle: true, HTTPClient: &http.Client{Transport: tr},
		Credentials: credentials.NewStaticCredentialsProvider(s.AccessKeyID, s.SecretAccessKey, ""),
	})
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// SigV4 signs the Host header: forward the one the client used.
			pr.Out.Host = pr.In.Host
		},
		Transport:      tr,
		FlushInterval:  -1,
		ModifyResponse: f.modifyResponse,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, http.StatusBadGateway, "BadGateway", "s3peer front: "+err.Error(), "")
		},
	}
	listen := func(addr string, useTLS bool) (string, error) {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return "", err
		}
		srv := &http.Server{Handler: f, ReadHeaderTimeout: 30 * time.Second}
		scheme := "http"
		if useTLS {
			scheme = "https"
			srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{o.pair}, NextProtos: []string{"http/1.1"}}
			ln = tls.NewListener(ln, srv.TLSConfig)
		}
		f.srvs = append(f.srvs, srv)
		go srv.Serve(ln)
		return scheme + "://" + ln.Addr().String(), nil
	}
	if f.URL, err = listen(o.listen, o.tls); err != nil {
		f.close()
		return nil, err
	}
	f.PlainURL = f.URL
	if o.tls {
		if f.PlainURL, err = listen(o.plainListen, false); err != nil {
			f.close()
			return nil, err
		}
	}
	if o.lifecycleEvery > 0 {
		f.wg.Add(1)
		go f.sweepEvery(o.lifecycleEvery)
	}
	return f, nil
}

func (f *Front) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	for _, s := range f.srvs {
		s.Close()
	}
	f.wg.Wait()
}

// load reads front.json, when there is one.
func (f *Front) load() error {
	f.st = frontState{Config: map[string]map[string][]byte{}, Objects: map[string]sseRecord{}, Uploads: map[string]sseRecord{}}
	if f.path == "" {
		return nil
	}
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", f.path, err)
	}
	if err := json.Unmarshal(b, &f.st); err != nil {
		return fmt.Errorf("parse %s: %w", f.path, err)
	}
	for _, m := range []*map[string]sseRecord{&f.st.Objects, &f.st.Uploads} {
		if *m == nil {
			*m = map[string]sseRecord{}
		}
	}
	if f.st.Config == nil {
		f.st.Config = map[string]map[string][]byte{}
	}
	return nil
}

// saveLocked writes front.json; the in-memory state stays authoritative
// when that fails.
func (f *Front) saveLocked() {
	if f.path == "" {
		return
	}
	b, err := json.Marshal(f.st)
	if err == nil {
		tmp := f.path + ".tmp"
		if err = os.WriteFile(tmp, b, 0o600); err == nil {
			err = os.Rename(tmp, f.path)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "s3peer front: save %s: %v\n", f.path, err)
	}
}

// Inject makes the front answer the nth (1-based, counted from the start of
// the server) request of op with h instead of forwarding it.
func (f *Front) Inject(op string, nth int, h http.HandlerFunc) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[faultKey{op, nth}] = h
}

// Forward passes a request to versitygw unchanged; an injected handler may
// call it to let a request through after all.
func (f *Front) Forward(w http.ResponseWriter, r *http.Request) { f.proxy.ServeHTTP(w, r) }

// Fail500 answers with an S3 InternalError (HTTP 500) after reading the body.
func Fail500(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	writeError(w, http.StatusInternalServerError, "InternalError", "injected failure", "")
}

// DropAfter returns a fault that reads n bytes of the request body (or all of
// it, if shorter) and then closes the client connection without answering.
func DropAfter(n int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.CopyN(io.Discard, r.Body, n)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler)
		}
		if tc, ok := conn.(*tls.Conn); ok {
			// Close the TCP connection under TLS without a close_notify, as
			// a reset connection looks to the client.
			tc.NetConn().Close()
			return
		}
		conn.Close()
	}
}

// Count returns how many requests of op the front has seen, faulted ones
// included.
func (f *Front) Count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.counts[op]
}

// Requests returns a copy of every request seen so far, in arrival order.
func (f *Front) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.log...)
}

// Config returns the XML last PUT for a bucket sub-resource (SubEncryption,
// SubLifecycle, SubPublicAccessBlock), or nil.
func (f *Front) Config(bucket, sub string) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.st.Config[bucket][sub]...)
}

// SetConfig stores XML for a bucket sub-resource as if a client had PUT it
// (nil deletes it), to prepare a pre-existing bucket.
func (f *Front) SetConfig(bucket, sub string, doc []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setConfigLocked(bucket, sub, doc)
}

func (f *Front) setConfigLocked(bucket, sub string, doc []byte) {
	if doc == nil {
		delete(f.st.Config[bucket], sub)
	} else {
		if f.st.Config[bucket] == nil {
			f.st.Config[bucket] = map[string][]byte{}
		}
		f.st.Config[bucket][sub] = append([]byte(nil), doc...)
	}
	f.saveLocked()
}

func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_s3peer/") {
		f.serveDebug(w, r)
		return
	}
	bucket, key := splitPath(r.URL.Path)
	q := r.URL.Query()
	op := Classify(r.Method, bucket, key, q, r.Header)
	f.mu.Lock()
	f.counts[op]++
	n := f.counts[op]
	fault := f.faults[faultKey{op, n}]
	f.log = append(f.log, Request{
		Op: op, N: n, Method: r.Method, Bucket: bucket, Key: key, Query: q,
		Header: r.Header.Clone(), Faulted: fault != nil, PartNumber: q.Get("partNumber"), TLS: r.TLS != nil,
	})
	f.mu.Unlock()
	if fault != nil {
		fault(w, r)
		return
	}
	if bucket != "" {
		if reason := f.denied(r, op, bucket, key); reason != "" {
			if _, err := f.verify(r, true); err != nil {
				writeAuthError(w, err, bucket)
				return
			}
			writeError(w, http.StatusForbidden, "AccessDenied", "Access Denied ("+reason+")", bucket)
			return
		}
	}
	if key == "" && bucket != "" {
		for _, sub := range []string{SubEncryption, SubLifecycle, SubPublicAccessBlock} {
			if q.Has(sub) {
				f.serveConfig(w, r, bucket, sub)
				return
			}
		}
		switch op {
		case "PutBucketPolicy":
			f.putPolicy(w, r, bucket)
			return
		case "DeleteBucketPolicy":
			// Before and after, as putPolicy does.
			f.forgetPolicy(bucket)
			defer f.forgetPolicy(bucket)
		case "DeleteBucket":
			defer func() {
				if _, err := os.Stat(filepath.Join(f.root, bucket)); os.IsNotExist(err) {
					f.mu.Lock()
					delete(f.st.Config, bucket)
					f.saveLocked()
					f.mu.Unlock()
					f.forgetPolicy(bucket)
				}
			}()
		}
	}
	f.forward(w, r, op, bucket, key)
}

// verify checks the request's signature as S3 does. The body is read (and
// put back) when its hash is signed and readBody is set; a body too large
// to hold is refused.
func (f *Front) verify(r *http.Request, readBody bool) ([]byte, error) {
	var body []byte
	claimed := r.Header.Get("X-Amz-Content-Sha256")
	if readBody && len(claimed) == 64 && !strings.HasPrefix(claimed, "STREAMING-") {
		const max = 16 << 20
		b, err := io.ReadAll(io.LimitReader(r.Body, max+1))
		if err != nil {
			return nil, err
		}
		if len(b) > max {
			return nil, &sigv4.Error{Kind: sigv4.Malformed, Message: "the request body is too large for the front to verify"}
		}
		body = b
		r.Body = io.NopCloser(bytes.NewReader(b))
	}
	_, err := f.verifier.Verify(r, body)
	return body, err
}

func writeAuthError(w http.ResponseWriter, err error, bucket string) {
	var se *sigv4.Error
	if !errors.As(err, &se) {
		writeError(w, http.StatusBadRequest, "IncompleteBody", err.Error(), bucket)
		return
	}
	status := http.StatusForbidden
	switch se.S3Code() {
	case "AuthorizationHeaderMalformed", "XAmzContentSHA256Mismatch":
		status = http.StatusBadRequest
	}
	writeError(w, status, se.S3Code(), se.Message, bucket)
}

func (f *Front) serveConfig(w http.ResponseWriter, r *http.Request, bucket, sub string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "IncompleteBody", err.Error(), bucket)
		return
	}
	if _, err := f.verifier.Verify(r, body); err != nil {
		writeAuthError(w, err, bucket)
		return
	}
	if st, err := os.Stat(filepath.Join(f.root, bucket)); err != nil || !st.IsDir() {
		writeError(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist", bucket)
		return
	}
	switch r.Method {
	case http.MethodPut:
		if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") {
			if body, err = decodeAWSChunked(body); err != nil {
				writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error(), bucket)
				return
			}
		}
		if err := validateConfig(sub, body); err != nil {
			writeError(w, http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed or did not validate against our published schema: "+err.Error(), bucket)
			return
		}
		f.SetConfig(bucket, sub, body)
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		doc := f.Config(bucket, sub)
		if doc == nil {
			switch sub {
			case SubEncryption:
				writeError(w, http.StatusNotFound, "ServerSideEncryptionConfigurationNotFoundError",
					"The server side encryption configuration was not found", bucket)
			case SubLifecycle:
				writeError(w, http.StatusNotFound, "NoSuchLifecycleConfiguration",
					"The lifecycle configuration does not exist", bucket)
			default:
				writeError(w, http.StatusNotFound, "NoSuchPublicAccessBlockConfiguration",
					"The public access block configuration was not found", bucket)
			}
			return
		}
		w.Header().Set("Content-Type", "application/xml")
		w.Write(doc)
	case http.MethodDelete:
		f.SetConfig(bucket, sub, nil)
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusMethodNotAllowed, "MethodNotAllowed",
			"The specified method is not allowed against this resource", bucket)
	}
}

// validateConfig checks that a sub-resource document is well-formed and,
// for the ones the front acts on, that it parses into what it acts on.
func validateConfig(sub string, doc []byte) error {
	switch sub {
	case SubEncryption:
		_, err := parseEncryption(doc)
		return err
	case SubLifecycle:
		_, err := parseLifecycle(doc)
		return err
	}
	return xml.Unmarshal(doc, new(struct{}))
}

// decodeAWSChunked strips aws-chunked framing ("<hex size>[;ext]\r\n<data>\r\n"
// repeated, a zero-size chunk, then optional trailers).
func decodeAWSChunked(b []byte) ([]byte, error) {
	var out bytes.Buffer
	for {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 {
			return nil, fmt.Errorf("aws-chunked body: missing chunk header")
		}
		head := string(b[:i])
		if j := strings.IndexByte(head, ';'); j >= 0 {
			head = head[:j]
		}
		var size int
		if _, err := fmt.Sscanf(head, "%x", &size); err != nil {
			return nil, fmt.Errorf("aws-chunked body: bad chunk size %q", head)
		}
		b = b[i+2:]
		if size == 0 {
			return out.Bytes(), nil
		}
		if size+2 > len(b) {
			return nil, fmt.Errorf("aws-chunked body: truncated chunk")
		}
		out.Write(b[:size])
		b = b[size+2:]
	}
}

func splitPath(p string) (bucket, key string) {
	p = strings.TrimPrefix(p, "/")
	bucket, key, _ = strings.Cut(p, "/")
	return bucket, key
}

// Classify names the S3 operation of a path-style request.
func Classify(method, bucket, key string, q url.Values, h http.Header) string {
	if bucket == "" {
		return "ListBuckets"
	}
	if key == "" {
		for _, sub := range []struct{ q, name string }{
			{"encryption", "BucketEncryption"}, {"lifecycle", "BucketLifecycleConfiguration"},
			{"policy", "BucketPolicy"}, {"publicAccessBlock", "PublicAccessBlock"},
			{"versioning", "BucketVersioning"}, {"tagging", "BucketTagging"}, {"acl", "BucketAcl"},
			{"ownershipControls", "BucketOwnershipControls"},
		} {
			if q.Has(sub.q) {
				switch method {
				case http.MethodPut:
					return "Put" + sub.name
				case http.MethodDelete:
					return "Delete" + sub.name
				default:
					return "Get" + sub.name
				}
			}
		}
		switch {
		case method == http.MethodGet && q.Has("location"):
			return "GetBucketLocation"
		case method == http.MethodGet && q.Has("uploads"):
			return "ListMultipartUploads"
		case method == http.MethodPost && q.Has("delete"):
			return "DeleteObjects"
		case method == http.MethodGet && q.Get("list-type") == "2":
			return "ListObjectsV2"
		case method == http.MethodGet:
			return "ListObjects"
		case method == http.MethodPut:
			return "CreateBucket"
		case method == http.MethodHead:
			return "HeadBucket"
		case method == http.MethodDelete:
			return "DeleteBucket"
		}
		return method + "Bucket"
	}
	copySrc := h.Get("X-Amz-Copy-Source") != ""
	switch {
	case method == http.MethodPut && q.Has("partNumber") && q.Has("uploadId"):
		if copySrc {
			return "UploadPartCopy"
		}
		return "UploadPart"
	case method == http.MethodPost && q.Has("uploads"):
		return "CreateMultipartUpload"
	case method == http.MethodPost && q.Has("uploadId"):
		return "CompleteMultipartUpload"
	case method == http.MethodDelete && q.Has("uploadId"):
		return "AbortMultipartUpload"
	case method == http.MethodGet && q.Has("uploadId"):
		return "ListParts"
	case method == http.MethodPut && q.Has("tagging"):
		return "PutObjectTagging"
	case method == http.MethodGet && q.Has("tagging"):
		return "GetObjectTagging"
	case method == http.MethodPut && copySrc:
		return "CopyObject"
	case method == http.MethodPut:
		return "PutObject"
	case method == http.MethodGet:
		return "GetObject"
	case method == http.MethodHead:
		return "HeadObject"
	case method == http.MethodDelete:
		return "DeleteObject"
	}
	return method + "Object"
}

func writeError(w http.ResponseWriter, status int, code, msg, bucket string) {
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	b, _ := xml.Marshal(struct {
		XMLName    xml.Name `xml:"Error"`
		Code       string
		Message    string
		BucketName string `xml:",omitempty"`
		RequestID  string `xml:"RequestId"`
	}{Code: code, Message: msg, BucketName: bucket, RequestID: "s3peer-front"})
	io.WriteString(w, xml.Header)
	w.Write(b)
}

// ctxKey carries a forwarded request's operation to modifyResponse.
type ctxKey struct{}

type forwarded struct {
	op, bucket, key string
	sse             *sseRecord // requested with the request
	uploadID        string
}

func (f *Front) forward(w http.ResponseWriter, r *http.Request, op, bucket, key string) {
	info := &forwarded{op: op, bucket: bucket, key: key, uploadID: r.URL.Query().Get("uploadId")}
	if alg := r.Header.Get("X-Amz-Server-Side-Encryption"); alg != "" {
		info.sse = &sseRecord{Algorithm: alg, KMSKeyID: r.Header.Get("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"),
			BucketKey: strings.EqualFold(r.Header.Get("X-Amz-Server-Side-Encryption-Bucket-Key-Enabled"), "true")}
	}
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, info)))
}
