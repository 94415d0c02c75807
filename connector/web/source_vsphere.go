package web

import (
	"github.com/a-h/templ"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/limit"
)

// VMware vCenter: URL, user and password, and the certificate's thumbprint
// to accept (shown for the user to compare when not given).
func init() {
	addSourceKind(sourceKind{
		Kind:  "vsphere",
		Label: "VMware vCenter",
		Fields: func(f *form) templ.Component {
			return templ.Join(
				fieldInput(field(f, "url", "vCenter URL", "url", "required", maxLen(limit.SourceURL), "placeholder=https://vcenter.example.com", "autocomplete=off")),
				fieldInput(field(f, "user", "User", "text", "required", maxLen(limit.SourceUser), "autocomplete=off", "hint=A vCenter user allowed to snapshot and export the VMs, e.g. rehost@vsphere.local.")),
				fieldInput(field(f, "password", "Password", "password", "required", "secret", maxLen(limit.SourceSecret), "autocomplete=new-password", "hint=Stored encrypted on the appliance and never shown again.")),
				fieldInput(field(f, "thumbprint", "Certificate thumbprint (SHA-256)", "text", "optional", maxLen(limit.SourceThumbprint), "autocomplete=off", "hint=Leave empty: the connector shows the thumbprint vCenter presents, for you to compare with the one vCenter's own pages show.")),
				offeredThumbprint(f, "vCenter presents", "I compared this thumbprint with the one vCenter shows, and accept its certificate"),
			)
		},
		Input: func(f *form) api.SourceInput {
			f.require("url", "user", "password")
			thumbprintConfirmed(f)
			return api.SourceInput{URL: f.Get("url"), User: f.Get("user"), Password: f.Values.Get("password"), Thumbprint: f.Get("thumbprint")}
		},
	})
}
