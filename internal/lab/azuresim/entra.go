package azuresim

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"time"
)

const (
	armAudience  = "https://management.core.windows.net"
	diskAudience = "https://disk.azure.com"
)

// serveEntra answers the tenant's OpenID discovery and token endpoints;
// false for any other path.
func (s *Sim) serveEntra(w http.ResponseWriter, r *http.Request) bool {
	prefix := "/" + s.TenantID + "/"
	if !strings.HasPrefix(r.URL.Path, prefix) {
		return false
	}
	base := s.AuthorityURL + s.TenantID
	switch strings.TrimPrefix(r.URL.Path, prefix) {
	case "v2.0/.well-known/openid-configuration":
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer":                 base + "/v2.0",
			"authorization_endpoint": base + "/oauth2/v2.0/authorize",
			"token_endpoint":         base + "/oauth2/v2.0/token",
			"tenant_region_scope":    "EU",
		})
	case "oauth2/v2.0/token":
		if f, ok := s.arrive(OpToken, r); ok {
			answerFault(w, OpToken, f)
			return true
		}
		s.serveToken(w, r)
	default:
		http.NotFound(w, r)
	}
	return true
}

// serveToken is the client-credentials grant: the app's secret, a client
// assertion signed with a registered certificate, or the registered
// federated token.
func (s *Sim) serveToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil || r.Method != http.MethodPost {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "invalid_request"})
		return
	}
	f := r.PostForm
	fail := func(code, desc string) {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": code, "error_description": desc, "error_codes": []int{7000215}})
	}
	if f.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type"})
		return
	}
	if f.Get("client_id") != s.ClientID {
		fail("unauthorized_client", fmt.Sprintf("AADSTS700016: Application with identifier '%s' was not found in the directory.", f.Get("client_id")))
		return
	}
	switch {
	case f.Get("client_secret") != "":
		if f.Get("client_secret") != s.ClientSecret {
			fail("invalid_client", "AADSTS7000215: Invalid client secret provided.")
			return
		}
	case f.Get("client_assertion") != "":
		if !s.validAssertion(f.Get("client_assertion")) {
			fail("invalid_client", "AADSTS700027: The certificate with identifier used to sign the client assertion is not registered on application.")
			return
		}
	default:
		fail("invalid_client", "AADSTS7000216: 'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.")
		return
	}
	aud := ""
	for _, sc := range strings.Fields(f.Get("scope")) {
		if a, ok := strings.CutSuffix(sc, "/.default"); ok {
			aud = strings.TrimRight(a, "/")
		}
	}
	tok := "simtok-" + randHex(16)
	s.mu.Lock()
	s.tokens[tok] = aud
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": tok})
}

// validAssertion accepts the federated token, or a JWT whose subject is
// the app and whose signature verifies with a registered certificate.
func (s *Sim) validAssertion(a string) bool {
	s.mu.Lock()
	fed, certs := s.federated, s.certs
	s.mu.Unlock()
	if fed != "" && a == fed {
		return true
	}
	parts := strings.Split(a, ".")
	if len(parts) != 3 {
		return false
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	if b, err := base64.RawURLEncoding.DecodeString(parts[1]); err != nil || json.Unmarshal(b, &claims) != nil || claims.Sub != s.ClientID {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	h := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	for _, der := range certs {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			continue
		}
		if pub, ok := c.PublicKey.(*rsa.PublicKey); ok {
			if rsa.VerifyPKCS1v15(pub, crypto.SHA256, h[:], sig) == nil || rsa.VerifyPSS(pub, crypto.SHA256, h[:], sig, nil) == nil {
				return true
			}
		}
	}
	return false
}

// validToken reports whether the Authorization header carries a token this
// tenant issued for the audience.
func (s *Sim) validToken(header, audience string) bool {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	aud, ok := s.tokens[tok]
	return ok && aud == audience
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// selfSigned makes the certificate of both endpoints, valid for loopback.
func selfSigned() (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "rehost azuresim"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(7 * 24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	return pair, certPEM, err
}
