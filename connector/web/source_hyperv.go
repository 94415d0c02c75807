package web

import (
	"cmp"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/a-h/templ"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/limit"
	"github.com/rehost/rehost/pkg/source/hyperv"
)

// Hyper-V hosts, failover clusters and SCVMM: the WinRM endpoint (HTTPS,
// 5986), the user and password, the authentication scheme, the certificate
// thumbprint, and where the VM files are read over SMB. The settings beyond
// the endpoint travel as the source's options (hyperv.Options), as
// `rehost source add --type hyperv|scvmm` stores them.
func init() {
	for _, k := range []struct {
		kind, label, url string
		cluster          bool
	}{
		{"hyperv", "Microsoft Hyper-V host or cluster", "https://hyperv01.example.com:5986", true},
		{"scvmm", "Microsoft System Center VMM", "https://scvmm.example.com:5986", false},
	} {
		addSourceKind(sourceKind{
			Kind:  k.kind,
			Label: k.label,
			Fields: func(f *form) templ.Component {
				fields := []templ.Component{
					fieldInput(field(f, "url", "WinRM URL", "url", "required", maxLen(limit.SourceURL), "placeholder="+k.url, "autocomplete=off", "hint=WinRM over HTTPS (port 5986).")),
					fieldInput(field(f, "user", "User", "text", "required", maxLen(limit.SourceUser), "autocomplete=off", `hint=A Windows account allowed to run the Hyper-V (or VMM) cmdlets and read the VM files, e.g. CORP\rehost.`)),
					fieldInput(field(f, "password", "Password", "password", "required", "secret", maxLen(limit.SourceSecret), "autocomplete=new-password", "hint=Stored encrypted on the appliance and never shown again.")),
					fieldInput(withOptions(field(f, "auth", "Authentication", "select", "value=ntlm"), "ntlm", "NTLM", "kerberos", "Kerberos", "basic", "Basic (over HTTPS only)")),
					fieldInput(field(f, "thumbprint", "Certificate thumbprint (SHA-256)", "text", "optional", maxLen(limit.SourceThumbprint), "autocomplete=off", "hint=Leave empty: the connector shows the thumbprint the host presents, for you to compare.")),
					offeredThumbprint(f, "The host presents", "I compared this thumbprint with the host's, and accept its certificate"),
					fieldInput(field(f, "shares", "SMB shares", "textarea", "optional", "rows=3", `placeholder=C:\ClusterStorage\Volume1=Volume1`, "hint=Where the VM files are read: one PATH=SHARE a line. Default: the host's administrative share (C$).")),
				}
				if k.cluster {
					fields = append(fields, fieldInput(field(f, "nodes", "Cluster nodes", "textarea", "optional", "rows=3", "placeholder=node1=hv01.example.com:5986",
						"hint=For a failover cluster, one node a line: NAME, or NAME=HOST[:PORT]. Each VM is followed to the node that runs it.")))
				}
				return templ.Join(fields...)
			},
			Input: func(f *form) api.SourceInput {
				f.require("url", "user", "password")
				thumbprintConfirmed(f)
				o := hyperv.Options{Auth: f.Get("auth")}
				for _, line := range lines(f.Get("shares")) {
					prefix, share, ok := strings.Cut(line, "=")
					if !ok {
						f.fail("shares", fmt.Sprintf(`%q: want PATH=SHARE, e.g. C:\ClusterStorage\Volume1=Volume1`, line))
						continue
					}
					o.Shares = append(o.Shares, hyperv.Share{Prefix: strings.TrimSpace(prefix), Share: strings.TrimSpace(share)})
				}
				for _, line := range lines(f.Get("nodes")) {
					name, addr, _ := strings.Cut(line, "=")
					if name = strings.TrimSpace(name); name == "" {
						f.fail("nodes", fmt.Sprintf("%q: want NAME or NAME=HOST[:PORT]", line))
						continue
					}
					if o.Nodes == nil {
						o.Nodes = map[string]hyperv.Node{}
					}
					o.Nodes[name] = hyperv.Node{Address: cmp.Or(strings.TrimSpace(addr), name)}
				}
				if err := o.Validate(); err != nil {
					f.fail("auth", err.Error())
				}
				b, _ := json.Marshal(o)
				return api.SourceInput{URL: f.Get("url"), User: f.Get("user"), Password: f.Values.Get("password"),
					Thumbprint: f.Get("thumbprint"), Options: b}
			},
		})
	}
}

// lines splits a textarea into its non-empty, trimmed lines.
func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}
