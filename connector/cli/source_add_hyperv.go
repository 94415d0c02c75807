package cli

import (
	"cmp"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/rehost/rehost/pkg/source/hyperv"
	"github.com/rehost/rehost/pkg/store"
)

// hypervFlags are the flags of `source add --type hyperv|scvmm`, stored as
// the source's options (hyperv.Options).
type hypervFlags struct {
	auth, krbRealm, krbConfig, krbSPN string
	ca, transport                     string
	smbPort                           int
	shares, nodes, nodeThumbprints    listFlag
	nodeSMB                           listFlag
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func (h *hypervFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&h.auth, "auth", "", "hyperv/scvmm: ntlm (default), kerberos, or basic (HTTPS only); "+
		"azure: secret (default, from REHOST_SOURCE_PASSWORD or stdin), certificate, workload-identity or managed-identity")
	fs.StringVar(&h.krbRealm, "kerberos-realm", "", "hyperv/scvmm: Kerberos realm (default: the user's domain)")
	fs.StringVar(&h.krbConfig, "kerberos-config", "", "hyperv/scvmm: krb5.conf (default /etc/krb5.conf)")
	fs.StringVar(&h.krbSPN, "kerberos-spn", "", "hyperv/scvmm: service principal (default HTTP/<host>)")
	fs.StringVar(&h.ca, "ca", "", "hyperv/scvmm: PEM file of a CA to trust for the WinRM certificates")
	fs.IntVar(&h.smbPort, "smb-port", 0, "hyperv/scvmm: SMB port of the hosts (default 445)")
	fs.Var(&h.shares, "share", `hyperv/scvmm: PATH=SHARE, read files under a host path through a share `+
		`(C:\ClusterStorage\Volume1=Volume1, or =\\fs01\vms); repeatable; default: the node's admin share (C$)`)
	fs.Var(&h.nodes, "node", "hyperv: a cluster node, NAME or NAME=HOST[:PORT]; repeatable")
	fs.Var(&h.nodeThumbprints, "node-thumbprint", "hyperv: NAME=THUMBPRINT of a node's WinRM certificate; repeatable")
	fs.Var(&h.nodeSMB, "node-smb", "hyperv/scvmm: NAME=HOST[:PORT] of a node's SMB server; repeatable")
	fs.StringVar(&h.transport, "transport", "", "hyperv: winrm (default), or wmi for a Windows build of rehost on the host itself")
}

// options builds the source's options; flags of Hyper-V given for another
// kind are an error rather than silently ignored.
func (h *hypervFlags) options(kind store.SourceKind) (json.RawMessage, error) {
	set := h.auth != "" || h.krbRealm != "" || h.krbConfig != "" || h.krbSPN != "" || h.ca != "" || h.transport != "" ||
		h.smbPort != 0 || len(h.shares)+len(h.nodes)+len(h.nodeThumbprints)+len(h.nodeSMB) > 0
	if kind != store.SourceHyperV && kind != store.SourceSCVMM {
		if set {
			return nil, fmt.Errorf("the Hyper-V flags (--auth, --share, --node, …) apply to --type hyperv or scvmm, not %s", kind)
		}
		return nil, nil
	}
	o := hyperv.Options{Auth: h.auth, KerberosRealm: h.krbRealm, KerberosConfig: h.krbConfig, KerberosSPN: h.krbSPN,
		SMBPort: h.smbPort, Transport: h.transport}
	if h.ca != "" {
		b, err := os.ReadFile(h.ca)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		o.CA = string(b)
	}
	for _, s := range h.shares {
		prefix, share, ok := strings.Cut(s, "=")
		if !ok {
			return nil, fmt.Errorf(`--share %q: want PATH=SHARE, e.g. C:\ClusterStorage\Volume1=Volume1`, s)
		}
		o.Shares = append(o.Shares, hyperv.Share{Prefix: prefix, Share: share})
	}
	node := func(name string) hyperv.Node {
		if o.Nodes == nil {
			o.Nodes = map[string]hyperv.Node{}
		}
		return o.Nodes[name]
	}
	for _, n := range h.nodes {
		name, addr, _ := strings.Cut(n, "=")
		if name == "" {
			return nil, fmt.Errorf("--node %q: want NAME or NAME=HOST[:PORT]", n)
		}
		nd := node(name)
		nd.Address = cmp.Or(addr, name)
		o.Nodes[name] = nd
	}
	for flagName, list := range map[string]listFlag{"--node-thumbprint": h.nodeThumbprints, "--node-smb": h.nodeSMB} {
		for _, v := range list {
			name, val, ok := strings.Cut(v, "=")
			if !ok || name == "" || val == "" {
				return nil, fmt.Errorf("%s %q: want NAME=VALUE", flagName, v)
			}
			nd := node(name)
			if flagName == "--node-smb" {
				nd.SMBAddress = val
			} else {
				nd.Thumbprint = val
			}
			o.Nodes[name] = nd
		}
	}
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if kind == store.SourceSCVMM && len(h.nodes) > 0 {
		return nil, errors.New("--node is for Hyper-V clusters; SCVMM knows its hosts (use --node-smb to reach their SMB servers)")
	}
	return json.Marshal(o)
}
