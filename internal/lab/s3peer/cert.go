package s3peer

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// selfSigned makes a self-signed CA certificate valid for 127.0.0.1, ::1 and
// localhost, writes cert.pem and key.pem into dir, and returns their absolute
// paths with the parsed pair and a pool trusting it. A pair already in dir
// and valid for another day is kept, so clients that trust it keep working
// across restarts.
func selfSigned(dir string) (certPath, keyPath string, pair tls.Certificate, pool *x509.CertPool, err error) {
	if dir, err = filepath.Abs(dir); err != nil {
		return "", "", pair, nil, err
	}
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if certPEM, err := os.ReadFile(certPath); err == nil {
		if p, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
			if leaf, err := x509.ParseCertificate(p.Certificate[0]); err == nil && time.Until(leaf.NotAfter) > 24*time.Hour {
				pool = x509.NewCertPool()
				pool.AppendCertsFromPEM(certPEM)
				return certPath, keyPath, p, pool, nil
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", pair, nil, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", pair, nil, fmt.Errorf("generate serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "rehost s3peer test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", pair, nil, fmt.Errorf("create certificate: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", "", pair, nil, fmt.Errorf("marshal key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return "", "", pair, nil, fmt.Errorf("write certificate: %w", err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		return "", "", pair, nil, fmt.Errorf("write key: %w", err)
	}
	if pair, err = tls.X509KeyPair(certPEM, keyPEM); err != nil {
		return "", "", pair, nil, fmt.Errorf("load key pair: %w", err)
	}
	pool = x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return certPath, keyPath, pair, pool, nil
}
