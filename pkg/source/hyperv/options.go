package hyperv

import (
	"encoding/json"
	"fmt"
	"strings"
)

// Options are a source's settings beyond its endpoint and credentials, as
// the connector stores them (store.Source.Options, JSON); nothing secret.
type Options struct {
	// Auth is ntlm (default), kerberos or basic.
	Auth string `json:"auth,omitempty"`
	// Kerberos settings, for auth kerberos.
	KerberosRealm  string `json:"kerberosRealm,omitempty"`
	KerberosConfig string `json:"kerberosConfig,omitempty"`
	KerberosSPN    string `json:"kerberosSpn,omitempty"`
	// CA is a PEM bundle trusted for the hosts' WinRM certificates.
	CA string `json:"ca,omitempty"`
	// SMBPort of the hosts (default 445).
	SMBPort int `json:"smbPort,omitempty"`
	// Shares map host paths to SMB shares.
	Shares []Share `json:"shares,omitempty"`
	// Nodes are a failover cluster's nodes (and per-node overrides).
	Nodes map[string]Node `json:"nodes,omitempty"`
	// Transport is winrm (default) or wmi (Windows build, local host).
	Transport string `json:"transport,omitempty"`
}

// ParseOptions reads stored options; empty means the defaults.
func ParseOptions(b []byte) (Options, error) {
	var o Options
	if len(b) == 0 || string(b) == "null" {
		return o, nil
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return o, fmt.Errorf("hyper-v source options: %w", err)
	}
	return o, o.Validate()
}

// Validate checks what can be checked without connecting.
func (o Options) Validate() error {
	switch strings.ToLower(o.Auth) {
	case "", AuthNTLM, AuthKerberos, AuthBasic:
	default:
		return fmt.Errorf("authentication %q is none of ntlm, kerberos, basic", o.Auth)
	}
	switch o.Transport {
	case "", "winrm", "wmi":
	default:
		return fmt.Errorf("transport %q is neither winrm nor wmi", o.Transport)
	}
	if o.SMBPort < 0 || o.SMBPort > 65535 {
		return fmt.Errorf("smb port %d out of range", o.SMBPort)
	}
	for _, s := range o.Shares {
		if s.Prefix == "" || s.Share == "" {
			return fmt.Errorf("share mapping %q=%q: both a path prefix and a share are needed", s.Prefix, s.Share)
		}
	}
	return nil
}

// Apply sets the options on cfg.
func (o Options) Apply(cfg *Config) {
	cfg.Auth = strings.ToLower(o.Auth)
	cfg.Kerberos = Kerberos{Realm: o.KerberosRealm, Config: o.KerberosConfig, SPN: o.KerberosSPN}
	if o.CA != "" {
		cfg.CA = []byte(o.CA)
	}
	cfg.SMBPort = o.SMBPort
	cfg.Shares = o.Shares
	cfg.Nodes = o.Nodes
	cfg.Transport = o.Transport
}
