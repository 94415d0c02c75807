package web

import (
	"encoding/json"
	"net/url"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/source/azure"
	"github.com/rehost/rehost/pkg/source/hyperv"
)

// The Hyper-V and SCVMM forms render their fields labelled, and read them
// into the options `rehost source add --type hyperv` stores.
func TestHyperVSourceForm(t *testing.T) {
	for _, kind := range []string{"hyperv", "scvmm"} {
		k, _ := findKind(kind)
		html := renderHTML(t, k.Fields(newForm(url.Values{"auth": {"kerberos"}, "offered_thumbprint": {"AA:BB"}})))
		for _, want := range []string{`for="f-url"`, `for="f-user"`, `for="f-password"`, `for="f-auth"`, `for="f-shares"`,
			`<option value="kerberos" selected>`, "AA:BB", `for="f-thumbprint_ok"`} {
			if !strings.Contains(html, want) {
				t.Errorf("%s form: no %q in\n%s", kind, want, html)
			}
		}
		if strings.Contains(html, `for="f-nodes"`) != (kind == "hyperv") {
			t.Errorf("%s form: cluster nodes field shown %v", kind, !strings.Contains(html, `for="f-nodes"`))
		}
	}

	k, ok := findKind("hyperv")
	if !ok {
		t.Fatal("no hyperv kind")
	}
	f := newForm(url.Values{"url": {"https://hv01:5986"}, "user": {`CORP\rehost`}, "password": {"pw"}, "auth": {"ntlm"},
		"shares": {"C:\\ClusterStorage\\Volume1=Volume1\n\n"}, "nodes": {"hv01\nhv02=10.0.0.2:5986"}})
	in := k.Input(f)
	if !f.ok() {
		t.Fatalf("valid form refused: %v", f.Errors)
	}
	o, err := hyperv.ParseOptions(in.Options)
	if err != nil {
		t.Fatal(err)
	}
	if o.Auth != "ntlm" || len(o.Shares) != 1 || o.Shares[0].Share != "Volume1" || o.Nodes["hv01"].Address != "hv01" || o.Nodes["hv02"].Address != "10.0.0.2:5986" {
		t.Errorf("options %+v", o)
	}
	if in.URL != "https://hv01:5986" || in.Password != "pw" {
		t.Errorf("input %+v", in)
	}
	bad := newForm(url.Values{"url": {"https://hv01:5986"}, "user": {"u"}, "password": {"pw"}, "auth": {"digest"}, "shares": {"no-equals"}})
	k.Input(bad)
	if bad.Errors["shares"] == "" || bad.Errors["auth"] == "" {
		t.Errorf("bad share line and scheme not reported next to their fields: %v", bad.Errors)
	}
}

// The Azure form reads the subscription and the sign-in into the options
// and the sealed secret `rehost source add --type azure` stores.
func TestAzureSourceForm(t *testing.T) {
	k, ok := findKind("azure")
	if !ok {
		t.Fatal("no azure kind")
	}
	f := newForm(url.Values{"subscription": {"sub-1"}, "resource_group": {"rg"}, "cloud": {"usgovernment"}, "auth": {"secret"},
		"tenant": {"t-1"}, "client_id": {"app-1"}, "password": {"s3cr3t"}})
	in := k.Input(f)
	if !f.ok() {
		t.Fatalf("valid form refused: %v", f.Errors)
	}
	var c azure.Config
	if err := json.Unmarshal(in.Options, &c); err != nil {
		t.Fatal(err)
	}
	if c.SubscriptionID != "sub-1" || c.ResourceGroup != "rg" || c.Cloud != azure.CloudUSGovernment || c.TenantID != "t-1" ||
		c.ClientID != "app-1" || in.Password != "s3cr3t" || strings.Contains(string(in.Options), "s3cr3t") {
		t.Errorf("input %+v, options %s", in, in.Options)
	}
	if in.URL != "azure:/subscriptions/sub-1/resourceGroups/rg" {
		t.Errorf("url %q", in.URL)
	}
	bad := newForm(url.Values{"subscription": {"sub-1"}, "auth": {"certificate"}, "tenant": {"t"}, "client_id": {"c"}})
	k.Input(bad)
	if bad.Errors["certificate"] == "" {
		t.Errorf("certificate sign-in without a certificate not reported next to it: %v", bad.Errors)
	}
}
