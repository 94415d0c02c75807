package s3peer

import (
	"bufio"
	"bytes"
	"crypto/md5"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rehost/rehost/pkg/sigv4"
)

// Sink is a discard S3 endpoint for benchmarks: HTTPS on 127.0.0.1 that
// speaks the part of S3 uploaders use (bucket create/head/location/list,
// PutObject, multipart create/upload/list/complete/abort, HeadObject,
// DeleteObject), checks every request's SigV4 signature, and reads and
// drops every body, keeping only each object's size, ETag and checksum.
// A part's CRC32C (or CRC32) sent as a header or an aws-chunked trailer is
// checked against the bytes received, so a benchmark's bytes are proven to
// arrive intact without being stored. It counts the bytes it reads off the
// TCP connections (TLS records, HTTP framing and all: the wire) and the
// payload bytes they carried.
type Sink struct {
	URL                          string
	Region                       string
	AccessKeyID, SecretAccessKey string
	// CertFile is the PEM of the self-signed certificate the sink serves,
	// for clients that take a CA bundle path.
	CertFile string

	wire, payload atomic.Int64
	srv           *http.Server
	ln            net.Listener
	verifier      *sigv4.Verifier

	mu      sync.Mutex
	objects map[string]sinkObject // bucket/key
	uploads map[string]*sinkUpload
	buckets map[string]bool
}

type sinkObject struct {
	size     int64
	etag     string
	crc32c   string // base64, "-N" suffixed for a multipart object
	modified time.Time
}

type sinkUpload struct {
	bucket, key string
	algorithm   string
	parts       map[int]sinkPart
}

type sinkPart struct {
	size     int64
	etag     string
	checksum string // base64 CRC32C the part carried or that was computed
}

// StartSink runs a sink for the duration of the test (closed at cleanup).
func StartSink(t testing.TB) *Sink {
	t.Helper()
	s, err := NewSink(t.TempDir())
	if err != nil {
		t.Fatalf("start the discard S3 endpoint: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// NewSink starts a sink whose certificate is written into dir; Close
// stops it.
func NewSink(dir string) (*Sink, error) {
	certFile, _, pair, _, err := selfSigned(dir)
	if err != nil {
		return nil, fmt.Errorf("sink certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &Sink{Region: "us-east-1", AccessKeyID: "AKRHSINK" + randHex(6), SecretAccessKey: randHex(20), CertFile: certFile,
		objects: map[string]sinkObject{}, uploads: map[string]*sinkUpload{}, buckets: map[string]bool{}}
	s.verifier = &sigv4.Verifier{S3: true, Region: s.Region, Secret: func(id string) (string, bool) {
		return s.SecretAccessKey, id == s.AccessKeyID
	}}
	s.ln = tls.NewListener(&countingListener{Listener: ln, n: &s.wire},
		&tls.Config{Certificates: []tls.Certificate{pair}, NextProtos: []string{"http/1.1"}})
	s.URL = "https://" + ln.Addr().String()
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: time.Minute}
	go s.srv.Serve(s.ln)
	return s, nil
}

// Close stops the sink.
func (s *Sink) Close() error { return s.srv.Close() }

// WireBytes is the number of bytes read off client connections so far.
func (s *Sink) WireBytes() int64 { return s.wire.Load() }

// PayloadBytes is the number of object and part body bytes received so far
// (aws-chunked framing removed).
func (s *Sink) PayloadBytes() int64 { return s.payload.Load() }

// ObjectSize is the size of a stored object, ok false when there is none.
func (s *Sink) ObjectSize(bucket, key string) (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[bucket+"/"+key]
	return o.size, ok
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c, n: l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// maxSignedBody is the largest body whose SHA-256 the sink verifies by
// holding it (a client that signs the payload's hash sends parts of at
// most this size).
const maxSignedBody = 256 << 20

func (s *Sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// A refused request's body is read too (before the buffered answer
	// goes out), so the client sees the error rather than a reset.
	defer io.Copy(io.Discard, r.Body)
	bucket, key := splitPath(r.URL.Path)
	if k, err := url.PathUnescape(key); err == nil {
		key = k
	}
	q := r.URL.Query()
	op := Classify(r.Method, bucket, key, q, r.Header)
	var held []byte
	if claim := r.Header.Get("X-Amz-Content-Sha256"); len(claim) == 64 && !strings.HasPrefix(claim, "STREAMING-") {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxSignedBody+1))
		if err != nil || len(b) > maxSignedBody {
			writeError(w, http.StatusBadRequest, "IncompleteBody", "body unreadable or too large to verify its signed hash", bucket)
			return
		}
		held = b
	}
	if _, err := s.verifier.Verify(r, held); err != nil {
		writeAuthError(w, err, bucket)
		return
	}
	if held != nil {
		r.Body = io.NopCloser(bytes.NewReader(held))
	}
	switch op {
	case "CreateBucket":
		s.mu.Lock()
		s.buckets[bucket] = true
		s.mu.Unlock()
	case "HeadBucket":
		if !s.hasBucket(bucket) {
			w.WriteHeader(http.StatusNotFound)
		}
	case "GetBucketLocation":
		writeXML(w, struct {
			XMLName xml.Name `xml:"LocationConstraint"`
			Region  string   `xml:",chardata"`
		}{Region: s.Region})
	case "ListObjectsV2", "ListObjects":
		s.list(w, bucket, q.Get("prefix"))
	case "PutObject":
		s.putObject(w, r, bucket, key)
	case "HeadObject":
		s.headObject(w, r, bucket, key)
	case "DeleteObject":
		s.mu.Lock()
		delete(s.objects, bucket+"/"+key)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case "CreateMultipartUpload":
		id := randHex(16)
		u := &sinkUpload{bucket: bucket, key: key, algorithm: r.Header.Get("X-Amz-Checksum-Algorithm"), parts: map[int]sinkPart{}}
		s.mu.Lock()
		s.uploads[id] = u
		s.mu.Unlock()
		if u.algorithm != "" {
			w.Header().Set("X-Amz-Checksum-Algorithm", u.algorithm)
		}
		echoSSE(w, r)
		writeXML(w, struct {
			XMLName  xml.Name `xml:"InitiateMultipartUploadResult"`
			Bucket   string
			Key      string
			UploadID string `xml:"UploadId"`
		}{Bucket: bucket, Key: key, UploadID: id})
	case "UploadPart":
		s.uploadPart(w, r, bucket, q)
	case "ListParts":
		s.listParts(w, bucket, key, q.Get("uploadId"))
	case "CompleteMultipartUpload":
		s.complete(w, r, bucket, key, q.Get("uploadId"))
	case "AbortMultipartUpload":
		s.mu.Lock()
		delete(s.uploads, q.Get("uploadId"))
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	default:
		writeError(w, http.StatusNotImplemented, "NotImplemented", "the discard endpoint does not implement "+op, bucket)
	}
}

func (s *Sink) hasBucket(b string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buckets[b]
}

func writeXML(w http.ResponseWriter, v any) {
	b, err := xml.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	io.WriteString(w, xml.Header)
	w.Write(b)
}

func echoSSE(w http.ResponseWriter, r *http.Request) {
	if v := r.Header.Get("X-Amz-Server-Side-Encryption"); v != "" {
		w.Header().Set("X-Amz-Server-Side-Encryption", v)
	}
}

// drain reads a request body (decoding aws-chunked framing) into also (when
// set), checking the CRC32C or CRC32 it carries in a header or a trailer;
// it returns the payload size and its CRC32C, base64.
func (s *Sink) drain(r *http.Request, also io.Writer) (int64, string, error) {
	body := io.Reader(r.Body)
	var chunked *chunkReader
	if strings.HasPrefix(r.Header.Get("X-Amz-Content-Sha256"), "STREAMING-") ||
		slices.Contains(strings.Split(r.Header.Get("Content-Encoding"), ","), "aws-chunked") {
		chunked = &chunkReader{r: bufio.NewReaderSize(r.Body, 64<<10)}
		body = chunked
	}
	c := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	var ieee hash.Hash32
	if r.Header.Get("X-Amz-Checksum-Crc32") != "" || strings.EqualFold(r.Header.Get("X-Amz-Trailer"), "x-amz-checksum-crc32") {
		ieee = crc32.NewIEEE()
	}
	dsts := []io.Writer{c}
	if ieee != nil {
		dsts = append(dsts, ieee)
	}
	if also != nil {
		dsts = append(dsts, also)
	}
	dst := io.MultiWriter(dsts...)
	n, err := io.CopyBuffer(dst, body, make([]byte, 256<<10))
	s.payload.Add(n)
	if err != nil {
		return n, "", err
	}
	sum := base64.StdEncoding.EncodeToString(c.Sum(nil))
	trailers := http.Header{}
	if chunked != nil {
		trailers = chunked.trailers
	}
	for _, name := range []string{"X-Amz-Checksum-Crc32c", "X-Amz-Checksum-Crc32"} {
		want := firstOf(r.Header.Get(name), trailers.Get(name))
		if want == "" {
			continue
		}
		got := sum
		if name == "X-Amz-Checksum-Crc32" {
			got = base64.StdEncoding.EncodeToString(ieee.Sum(nil))
		}
		if got != want {
			return n, "", fmt.Errorf("%s %s does not match the %d bytes received (%s)", strings.ToLower(name), want, n, got)
		}
	}
	return n, sum, nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (s *Sink) putObject(w http.ResponseWriter, r *http.Request, bucket, key string) {
	if !s.hasBucket(bucket) {
		writeError(w, http.StatusNotFound, "NoSuchBucket", "The specified bucket does not exist", bucket)
		return
	}
	// A single-request object's ETag is its MD5, as S3's is: clients
	// (rclone) check it. Parts get a cheaper opaque one.
	m := md5.New()
	n, sum, err := s.drain(r, m)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadDigest", err.Error(), bucket)
		return
	}
	etag := `"` + hex.EncodeToString(m.Sum(nil)) + `"`
	s.mu.Lock()
	s.objects[bucket+"/"+key] = sinkObject{size: n, etag: etag, crc32c: sum, modified: time.Now()}
	s.mu.Unlock()
	w.Header().Set("ETag", etag)
	w.Header().Set("X-Amz-Checksum-Crc32c", sum)
	echoSSE(w, r)
}

// etagOf makes an opaque ETag from what the sink knows of a body (it does
// not spend the CPU an MD5 would take).
func etagOf(sum string, n int64) string {
	b, _ := base64.StdEncoding.DecodeString(sum)
	var x [16]byte
	copy(x[:], b)
	binary.BigEndian.PutUint64(x[8:], uint64(n))
	return hex.EncodeToString(x[:])
}

func (s *Sink) headObject(w http.ResponseWriter, r *http.Request, bucket, key string) {
	s.mu.Lock()
	o, ok := s.objects[bucket+"/"+key]
	s.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Length", strconv.FormatInt(o.size, 10))
	w.Header().Set("ETag", o.etag)
	w.Header().Set("Last-Modified", o.modified.UTC().Format(http.TimeFormat))
	w.Header().Set("Content-Type", "application/octet-stream")
	if r.Header.Get("X-Amz-Checksum-Mode") == "ENABLED" && o.crc32c != "" {
		w.Header().Set("X-Amz-Checksum-Crc32c", o.crc32c)
	}
}

func (s *Sink) list(w http.ResponseWriter, bucket, prefix string) {
	type content struct {
		Key          string
		LastModified string
		ETag         string
		Size         int64
		StorageClass string
	}
	var out []content
	s.mu.Lock()
	for k, o := range s.objects {
		b, key, _ := strings.Cut(k, "/")
		if b == bucket && strings.HasPrefix(key, prefix) {
			out = append(out, content{key, o.modified.UTC().Format(time.RFC3339), o.etag, o.size, "STANDARD"})
		}
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b content) int { return strings.Compare(a.Key, b.Key) })
	writeXML(w, struct {
		XMLName     xml.Name `xml:"ListBucketResult"`
		Name        string
		Prefix      string
		KeyCount    int
		MaxKeys     int
		IsTruncated bool
		Contents    []content
	}{Name: bucket, Prefix: prefix, KeyCount: len(out), MaxKeys: 1000, Contents: out})
}

func (s *Sink) upload(id string) (*sinkUpload, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.uploads[id]
	return u, ok
}

func (s *Sink) uploadPart(w http.ResponseWriter, r *http.Request, bucket string, q url.Values) {
	u, ok := s.upload(q.Get("uploadId"))
	num, err := strconv.Atoi(q.Get("partNumber"))
	if !ok || err != nil || num < 1 || num > 10000 {
		writeError(w, http.StatusNotFound, "NoSuchUpload", "The specified upload does not exist or the part number is invalid", bucket)
		return
	}
	n, sum, err := s.drain(r, nil)
	if err != nil {
		writeError(w, http.StatusBadRequest, "BadDigest", err.Error(), bucket)
		return
	}
	p := sinkPart{size: n, etag: `"` + etagOf(sum, n) + `"`, checksum: sum}
	s.mu.Lock()
	u.parts[num] = p
	s.mu.Unlock()
	w.Header().Set("ETag", p.etag)
	if strings.EqualFold(u.algorithm, "CRC32C") {
		w.Header().Set("X-Amz-Checksum-Crc32c", sum)
	}
	echoSSE(w, r)
}

func (s *Sink) listParts(w http.ResponseWriter, bucket, key, id string) {
	u, ok := s.upload(id)
	if !ok {
		writeError(w, http.StatusNotFound, "NoSuchUpload", "The specified upload does not exist", bucket)
		return
	}
	type part struct {
		PartNumber     int
		ETag           string
		Size           int64
		ChecksumCRC32C string `xml:",omitempty"`
	}
	var out []part
	s.mu.Lock()
	for n, p := range u.parts {
		out = append(out, part{n, p.etag, p.size, p.checksum})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b part) int { return a.PartNumber - b.PartNumber })
	writeXML(w, struct {
		XMLName     xml.Name `xml:"ListPartsResult"`
		Bucket      string
		Key         string
		UploadID    string `xml:"UploadId"`
		IsTruncated bool
		Parts       []part `xml:"Part"`
	}{Bucket: bucket, Key: key, UploadID: id, Parts: out})
}

func (s *Sink) complete(w http.ResponseWriter, r *http.Request, bucket, key, id string) {
	var req struct {
		Parts []struct {
			PartNumber     int
			ETag           string
			ChecksumCRC32C string
		} `xml:"Part"`
	}
	if err := xml.NewDecoder(io.LimitReader(r.Body, 4<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "MalformedXML", "complete multipart upload: "+err.Error(), bucket)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.uploads[id]
	if !ok || u.key != key || u.bucket != bucket {
		writeError(w, http.StatusNotFound, "NoSuchUpload", "The specified upload does not exist", bucket)
		return
	}
	var size int64
	composite := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for i, cp := range req.Parts {
		p, ok := u.parts[cp.PartNumber]
		if !ok || strings.Trim(cp.ETag, `"`) != strings.Trim(p.etag, `"`) || (i > 0 && cp.PartNumber <= req.Parts[i-1].PartNumber) ||
			(cp.ChecksumCRC32C != "" && cp.ChecksumCRC32C != p.checksum) {
			writeError(w, http.StatusBadRequest, "InvalidPart", fmt.Sprintf("part %d is not the one uploaded", cp.PartNumber), bucket)
			return
		}
		b, _ := base64.StdEncoding.DecodeString(p.checksum)
		composite.Write(b)
		size += p.size
	}
	if len(req.Parts) == 0 {
		writeError(w, http.StatusBadRequest, "MalformedXML", "no parts", bucket)
		return
	}
	n := len(req.Parts)
	sum := base64.StdEncoding.EncodeToString(composite.Sum(nil)) + "-" + strconv.Itoa(n)
	etag := fmt.Sprintf(`"%s-%d"`, etagOf(sum[:8], size), n)
	s.objects[bucket+"/"+key] = sinkObject{size: size, etag: etag, crc32c: sum, modified: time.Now()}
	delete(s.uploads, id)
	res := struct {
		XMLName        xml.Name `xml:"CompleteMultipartUploadResult"`
		Location       string
		Bucket         string
		Key            string
		ETag           string
		ChecksumCRC32C string `xml:",omitempty"`
	}{Location: s.URL + "/" + bucket + "/" + key, Bucket: bucket, Key: key, ETag: etag}
	if strings.EqualFold(u.algorithm, "CRC32C") {
		res.ChecksumCRC32C = sum
	}
	writeXML(w, res)
}

// chunkReader decodes an aws-chunked body ("<hex size>[;ext]\r\n<data>\r\n"
// repeated, a zero-size chunk, then trailers and a blank line) as it
// streams.
type chunkReader struct {
	r        *bufio.Reader
	left     int64 // bytes left in the current chunk
	done     bool
	trailers http.Header
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, fmt.Errorf("aws-chunked body: chunk header: %w", unexpected(err))
		}
		head, _, _ := strings.Cut(strings.TrimRight(line, "\r\n"), ";")
		size, err := strconv.ParseInt(strings.TrimSpace(head), 16, 64)
		if err != nil || size < 0 {
			return 0, fmt.Errorf("aws-chunked body: bad chunk size %q", head)
		}
		if size == 0 {
			c.done = true
			return 0, c.readTrailers()
		}
		c.left = size
	}
	n, err := c.r.Read(p[:min(int64(len(p)), c.left)])
	c.left -= int64(n)
	if c.left == 0 && err == nil {
		var crlf [2]byte
		if _, err = io.ReadFull(c.r, crlf[:]); err == nil && string(crlf[:]) != "\r\n" {
			err = errors.New("aws-chunked body: chunk not followed by CRLF")
		}
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (c *chunkReader) readTrailers() error {
	c.trailers = http.Header{}
	for {
		line, err := c.r.ReadString('\n')
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			if err != nil && err != io.EOF {
				return err
			}
			return io.EOF
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			c.trailers.Set(strings.TrimSpace(k), strings.TrimSpace(v))
		}
		if err != nil {
			return io.EOF
		}
	}
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
