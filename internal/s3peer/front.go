package s3peer

import (
	"bytes"
	"crypto/tls"
	"encoding/xml"
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

// Front is a reverse proxy in front of versitygw. It
//   - records PUT ?encryption, ?lifecycle and ?publicAccessBlock per bucket and answers GET and
//     DELETE of them like S3 does (versitygw does not implement them);
//   - passes every other request through unchanged and streaming, keeping
//     the Host header the client signed;
//   - counts requests per operation and runs injected faults on the Nth
//     request of an operation.
//
// It does not check signatures on the requests it answers itself.
type Front struct {
	URL string

	srv    *http.Server
	ln     net.Listener
	proxy  *httputil.ReverseProxy
	root   string
	mu     sync.Mutex
	counts map[string]int
	log    []Request
	faults map[faultKey]http.HandlerFunc
	config map[string]map[string][]byte // bucket → sub-resource → XML
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
}

type faultKey struct {
	op string
	n  int
}

func newFront(s *Server, pair tls.Certificate, useTLS bool) (*Front, error) {
	target, err := url.Parse(s.BackendURL)
	if err != nil {
		return nil, err
	}
	f := &Front{
		root:   s.Dir,
		counts: map[string]int{},
		faults: map[faultKey]http.HandlerFunc{},
		config: map[string]map[string][]byte{},
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.MaxIdleConnsPerHost = 64
	if s.CAPool != nil {
		tr.TLSClientConfig = &tls.Config{RootCAs: s.CAPool}
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// SigV4 signs the Host header: forward the one the client used.
			pr.Out.Host = pr.In.Host
		},
		Transport:     tr,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeError(w, http.StatusBadGateway, "BadGateway", "s3peer front: "+err.Error(), "")
		},
	}
	f.ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f.srv = &http.Server{Handler: f}
	scheme := "http"
	if useTLS {
		scheme = "https"
		f.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}}
		f.ln = tls.NewListener(f.ln, f.srv.TLSConfig)
	}
	f.URL = scheme + "://" + f.ln.Addr().String()
	go f.srv.Serve(f.ln)
	return f, nil
}

func (f *Front) close() { f.srv.Close() }

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
	return append([]byte(nil), f.config[bucket][sub]...)
}

// SetConfig stores XML for a bucket sub-resource as if a client had PUT it
// (nil deletes it), to prepare a pre-existing bucket.
func (f *Front) SetConfig(bucket, sub string, doc []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if doc == nil {
		delete(f.config[bucket], sub)
		return
	}
	if f.config[bucket] == nil {
		f.config[bucket] = map[string][]byte{}
	}
	f.config[bucket][sub] = append([]byte(nil), doc...)
}

func (f *Front) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	bucket, key := splitPath(r.URL.Path)
	q := r.URL.Query()
	op := Classify(r.Method, bucket, key, q, r.Header)
	f.mu.Lock()
	f.counts[op]++
	n := f.counts[op]
	fault := f.faults[faultKey{op, n}]
	f.log = append(f.log, Request{
		Op: op, N: n, Method: r.Method, Bucket: bucket, Key: key, Query: q,
		Header: r.Header.Clone(), Faulted: fault != nil, PartNumber: q.Get("partNumber"),
	})
	f.mu.Unlock()
	if fault != nil {
		fault(w, r)
		return
	}
	if key == "" && bucket != "" {
		for _, sub := range []string{SubEncryption, SubLifecycle, SubPublicAccessBlock} {
			if q.Has(sub) {
				f.serveConfig(w, r, bucket, sub)
				return
			}
		}
		if r.Method == http.MethodDelete && len(q) == 0 {
			defer func() {
				if _, err := os.Stat(filepath.Join(f.root, bucket)); os.IsNotExist(err) {
					f.mu.Lock()
					delete(f.config, bucket)
					f.mu.Unlock()
				}
			}()
		}
	}
	f.proxy.ServeHTTP(w, r)
}

func (f *Front) serveConfig(w http.ResponseWriter, r *http.Request, bucket, sub string) {
	if st, err := os.Stat(filepath.Join(f.root, bucket)); err != nil || !st.IsDir() {
		io.Copy(io.Discard, r.Body)
		writeError(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist", bucket)
		return
	}
	switch r.Method {
	case http.MethodPut:
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			writeError(w, http.StatusBadRequest, "IncompleteBody", err.Error(), bucket)
			return
		}
		if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") {
			if body, err = decodeAWSChunked(body); err != nil {
				writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error(), bucket)
				return
			}
		}
		if err := xml.Unmarshal(body, new(struct{})); err != nil {
			writeError(w, http.StatusBadRequest, "MalformedXML", "The XML you provided was not well-formed", bucket)
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
	var b strings.Builder
	b.WriteString(xml.Header)
	b.WriteString("<Error><Code>")
	xml.EscapeText(&b, []byte(code))
	b.WriteString("</Code><Message>")
	xml.EscapeText(&b, []byte(msg))
	b.WriteString("</Message>")
	if bucket != "" {
		b.WriteString("<BucketName>")
		xml.EscapeText(&b, []byte(bucket))
		b.WriteString("</BucketName>")
	}
	b.WriteString("<RequestId>s3peer-front</RequestId></Error>")
	io.WriteString(w, b.String())
}
