package azuresim

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"
)

// serveBlob is the managed-disk data endpoint: it lets a SAS holder read
// while its grant is neither revoked nor expired (Azurite checks the
// signature itself), asks an Entra ID token for disks that need one,
// answers page-range diffs itself (Azurite ignores the previous snapshot:
// changes.go), and counts what it serves.
func (s *Sim) serveBlob(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		blobError(w, http.StatusForbidden, "AuthorizationPermissionMismatch", "a read grant allows reads only")
		return
	}
	s.mu.Lock()
	g, ok := s.grants[r.URL.Query().Get("sig")]
	s.mu.Unlock()
	switch {
	case !ok:
		blobError(w, http.StatusForbidden, "AuthenticationFailed", "Server failed to authenticate the request: the access grant was revoked or never issued.")
		return
	case time.Now().After(g.expiry):
		blobError(w, http.StatusForbidden, "AuthenticationFailed", "Server failed to authenticate the request: signed expiry time has passed.")
		return
	case g.entra && !s.validToken(r.Header.Get("Authorization"), diskAudience):
		blobError(w, http.StatusUnauthorized, "NoAuthenticationInformation", "This disk requires an Entra ID token for data access (dataAccessAuthMode AzureActiveDirectory).")
		return
	case g.failAfter >= 0 && g.served.Load() >= g.failAfter:
		panic(http.ErrAbortHandler) // the injected fault: the connection drops
	}
	if isDiff(r) {
		s.serveDiff(w, r, r.URL.Query().Get("sig"))
		return
	}
	data := r.URL.Query().Get("comp") == "" && r.Method == http.MethodGet
	op := OpBlobRead
	if r.URL.Query().Get("comp") == "pagelist" {
		op = OpPageRanges
	}
	f, faulted := s.arrive(op, r)
	if faulted && f.Status != 0 {
		answerFault(w, op, f)
		return
	}
	if data {
		s.rangeRequests.Add(1)
		s.mu.Lock()
		gate := s.gate
		s.mu.Unlock()
		if gate != nil {
			s.waiting.Add(1)
			<-gate
			s.waiting.Add(-1)
		}
	}
	target, _ := url.Parse(s.az.url)
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
			pr.Out.Header.Del("Authorization") // the SAS authorizes at Azurite
		},
		ModifyResponse: func(resp *http.Response) error {
			if data {
				resp.Body = &countingBody{ReadCloser: resp.Body, s: s, g: g}
			}
			if faulted && f.CutAfter > 0 {
				resp.Body = &cutBody{ReadCloser: resp.Body, left: f.CutAfter}
			}
			return nil
		},
		// A cut stream (the injected fault) is expected, not news.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	proxy.ServeHTTP(w, r)
}

type countingBody struct {
	io.ReadCloser
	s *Sim
	g *grant
}

var errCut = errors.New("azuresim: stream cut by an injected fault")

func (b *countingBody) Read(p []byte) (int, error) {
	if b.g.failAfter >= 0 {
		left := b.g.failAfter - b.g.served.Load()
		if left <= 0 {
			return 0, errCut
		}
		p = p[:min(int64(len(p)), left)]
	}
	n, err := b.ReadCloser.Read(p)
	b.s.bytesRead.Add(int64(n))
	b.g.served.Add(int64(n))
	return n, err
}

func blobError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/xml")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	fmt.Fprintf(w, `<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s</Message></Error>`, code, msg)
}
