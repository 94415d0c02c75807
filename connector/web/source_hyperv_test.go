package web

import (
	"bytes"
	"net/url"
	"strings"
	"testing"

	"github.com/rehost/rehost/pkg/source/hyperv"
)

// The Hyper-V and SCVMM forms render their fields labelled, and read them
// into the options `rehost source add --type hyperv` stores.
func TestHyperVSourceForm(t *testing.T) {
	pages, err := parsePages()
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"hyperv", "scvmm"} {
		var buf bytes.Buffer
		f := newForm(url.Values{"auth": {"kerberos"}, "offered_thumbprint": {"AA:BB"}})
		if err := pages["source-fields-"+kind].ExecuteTemplate(&buf, "content", &view{Form: f}); err != nil {
			t.Fatal(err)
		}
		html := buf.String()
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
