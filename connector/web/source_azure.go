package web

import (
	"cmp"
	"encoding/json"

	"github.com/a-h/templ"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/limit"
	"github.com/rehost/rehost/pkg/source/azure"
)

// Azure: a subscription (optionally one resource group), the cloud, and how
// the connector signs in to Entra ID. The settings travel as the source's
// options (azure.Config), the client secret or certificate as its sealed
// secret, as `rehost source add --type azure` stores them.
func init() {
	addSourceKind(sourceKind{
		Kind:  "azure",
		Label: "Microsoft Azure subscription",
		Fields: func(f *form) templ.Component {
			return templ.Join(
				fieldInput(field(f, "subscription", "Subscription id", "text", "required", "autocomplete=off", "placeholder=00000000-0000-0000-0000-000000000000")),
				fieldInput(field(f, "resource_group", "Resource group", "text", "optional", "autocomplete=off", "hint=Only this group's VMs; empty: the whole subscription.")),
				fieldInput(withOptions(field(f, "cloud", "Cloud", "select", "value=public"), "public", "Azure (public)", "usgovernment", "Azure US Government", "china", "Azure China (21Vianet)")),
				fieldInput(withOptions(field(f, "auth", "Sign in with", "select", "value=secret"), "secret", "A service principal's client secret", "certificate", "A service principal's certificate",
					"workload-identity", "Workload identity (federated token)", "managed-identity", "The managed identity of this VM")),
				fieldInput(field(f, "tenant", "Tenant (directory) id", "text", "optional", "autocomplete=off", "hint=Needed for a service principal and workload identity.")),
				fieldInput(field(f, "client_id", "Client (application) id", "text", "optional", "autocomplete=off", "hint=The service principal's, or a user-assigned managed identity's.")),
				fieldInput(field(f, "password", "Client secret", "password", "optional", "secret", maxLen(limit.SourceSecret), "autocomplete=new-password", "hint=For a client secret: stored encrypted on the appliance and never shown again.")),
				fieldInput(field(f, "certificate", "Client certificate (PEM, with its private key)", "textarea", "optional", "secret", maxLen(limit.SourceSecret), "rows=4", "hint=For a certificate: paste it; stored encrypted and never shown again.")),
			)
		},
		// The source's URL and user are made of the subscription and the
		// client id.
		ErrorField: func(e *api.Error) string {
			switch f := errorField(e); f {
			case "url":
				return "subscription"
			case "user":
				return "client_id"
			default:
				return f
			}
		},
		Input: func(f *form) api.SourceInput {
			f.require("subscription")
			c := azure.Config{SubscriptionID: f.Get("subscription"), ResourceGroup: f.Get("resource_group"),
				TenantID: f.Get("tenant"), ClientID: f.Get("client_id"), Auth: cmp.Or(f.Get("auth"), azure.AuthSecret),
				Cloud: cmp.Or(f.Get("cloud"), azure.CloudPublic)}
			var secret string
			switch c.Auth {
			case azure.AuthSecret:
				f.require("tenant", "client_id", "password")
				secret = f.Values.Get("password")
			case azure.AuthCertificate:
				f.require("tenant", "client_id", "certificate")
				secret = f.Values.Get("certificate")
			case azure.AuthWorkloadIdentity:
				f.require("tenant", "client_id")
			case azure.AuthManagedIdentity:
			default:
				f.fail("auth", "choose how the connector signs in")
			}
			b, _ := json.Marshal(c)
			url := "azure:/subscriptions/" + c.SubscriptionID
			if c.ResourceGroup != "" {
				url += "/resourceGroups/" + c.ResourceGroup
			}
			return api.SourceInput{URL: url, User: c.ClientID, Password: secret, Options: b}
		},
	})
}
