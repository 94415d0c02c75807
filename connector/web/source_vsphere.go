package web

import "github.com/rehost/rehost/connector/api"

// VMware vCenter: URL, user and password, and the certificate's thumbprint
// to accept (shown for the user to compare when not given).
func init() {
	addSourceKind(sourceKind{
		Kind:  "vsphere",
		Label: "VMware vCenter",
		Fields: `
{{template "field" (field .Form "url" "vCenter URL" "url" "required" "placeholder=https://vcenter.example.com" "autocomplete=off")}}
{{template "field" (field .Form "user" "User" "text" "required" "autocomplete=off" "hint=A vCenter user allowed to snapshot and export the VMs, e.g. rehost@vsphere.local.")}}
{{template "field" (field .Form "password" "Password" "password" "required" "secret" "autocomplete=new-password" "hint=Stored encrypted on the appliance and never shown again.")}}
{{template "field" (field .Form "thumbprint" "Certificate thumbprint (SHA-256)" "text" "optional" "autocomplete=off" "hint=Leave empty: the connector shows the thumbprint vCenter presents, for you to compare with the one vCenter's own pages show.")}}
{{with .Form}}{{with .Get "offered_thumbprint"}}
<input type="hidden" name="offered_thumbprint" value="{{.}}">
<p class="thumbprint-offered">vCenter presents <code id="offered-thumbprint">{{.}}</code></p>
{{end}}{{end}}
{{with .Form}}{{if .Get "offered_thumbprint"}}{{template "checkbox" (field $.Form "thumbprint_ok" "I compared this thumbprint with the one vCenter shows, and accept its certificate" "checkbox")}}{{end}}{{end}}
`,
		Input: func(f *form) api.SourceInput {
			f.require("url", "user", "password")
			thumbprintConfirmed(f)
			return api.SourceInput{URL: f.Get("url"), User: f.Get("user"), Password: f.Values.Get("password"), Thumbprint: f.Get("thumbprint")}
		},
	})
}
