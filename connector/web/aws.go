package web

import (
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/pkg/awsregion"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// setupResult is the outcome of the last registration, shown on the AWS
// page: what setup changed, and the documents an administrator must apply.
type setupResult struct {
	At     time.Time
	Report awstarget.SetupReport
	Err    string
}

type awsView struct {
	Reg      *api.Registration
	Last     *setupResult
	OnEC2    bool
	Regions  []string
	OpenForm bool
	// Advanced opens the advanced settings: one is set or has an error.
	Advanced bool
}

// awsFields maps the registration's API members to the form's fields.
var awsFields = map[string]string{
	"settings.region": "region", "settings.bucket": "bucket", "settings.rolename": "role_name", "settings.kmskeyid": "kms_key",
	"settings.accesskeyid": "access_key_id", "settings.secretaccesskey": "secret_access_key", "settings.profile": "cred",
	"settings.assumerolearn": "role_arn", "settings.externalid": "external_id", "settings.endpoint": "endpoint",
	"settings.s3endpoint": "s3_endpoint", "settings.capem": "ca_pem", "settings.importmode": "import_mode",
}

func (c *Console) awsPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	return c.awsView(w, r, rq, nil, http.StatusOK)
}

func (c *Console) awsView(w http.ResponseWriter, r *http.Request, rq *request, wz *wizardView, status int) error {
	reg, err := c.svc.GetRegistration(r.Context(), &api.GetRegistrationInput{})
	if err != nil {
		return err
	}
	onEC2 := c.o.OnEC2()
	f := rq.form
	if f == nil {
		f = newForm(nil)
		cred := "keys"
		if onEC2 {
			cred = "instance"
		}
		f.Values.Set("cred", cred)
		f.Values.Set("role_name", "vmimport")
		f.Values.Set("create_role", "on")
		f.Values.Set("import_mode", "image")
		if reg.Registered {
			for k, v := range map[string]string{"region": reg.Region, "bucket": reg.Bucket, "role_name": reg.RoleName,
				"kms_key": reg.KmsKeyID, "endpoint": reg.Endpoint, "s3_endpoint": reg.S3Endpoint, "import_mode": reg.ImportMode} {
				if v != "" {
					f.Values.Set(k, v)
				}
			}
		}
	}
	c.mu.Lock()
	last := c.lastSetup
	c.mu.Unlock()
	d := awsView{Reg: reg, Last: last, OnEC2: onEC2, Regions: awsregion.Regions(), OpenForm: !reg.Registered || rq.form != nil}
	for _, k := range []string{"endpoint", "s3_endpoint", "ca_pem", "kms_key", "bucket", "fix_bucket"} {
		d.Advanced = d.Advanced || f.Errors[k] != "" || (k != "bucket" && k != "fix_bucket" && f.Get(k) != "")
	}
	v := &view{Title: "AWS registration", Nav: "aws", Wizard: wz, Form: f}
	return c.render(w, r, rq, status, v, awsPage(v, d))
}

func (c *Console) awsSubmit(w http.ResponseWriter, r *http.Request, rq *request) error {
	f := rq.form
	wz, err := c.inWizard(r, rq, "aws")
	if err != nil {
		return err
	}
	s, ok := awsSettings(f)
	if !ok {
		return c.awsView(w, r, rq, wz, http.StatusUnprocessableEntity)
	}
	in := &api.RegisterInput{Settings: s, CreateRole: f.On("create_role"), FixBucket: f.On("fix_bucket")}
	out, err := c.svc.Register(r.Context(), in)
	res := &setupResult{At: time.Now()}
	if out != nil {
		res.Report = out.Report
	}
	if err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		res.Err = ae.Message
		c.setLastSetup(res)
		awsFieldError(f, ae)
		c.log.Warn("console: registration failed", "region", s.Region, "err", ae.Message)
		return c.awsView(w, r, rq, wz, http.StatusUnprocessableEntity)
	}
	c.setLastSetup(res)
	c.log.Info("console: registered with AWS", "account", res.Report.Account, "region", res.Report.Region, "changes", len(res.Report.Changes))
	return c.flashTo(w, r, rq, back(wz, "aws", "/aws"), flash{Kind: "ok",
		Message: "Registered with AWS account " + res.Report.Account + " in " + res.Report.Region + ": see below what the connector checked and changed."})
}

func (c *Console) setLastSetup(res *setupResult) {
	c.mu.Lock()
	c.lastSetup = res
	c.mu.Unlock()
}

// awsSettings reads and checks the registration form.
func awsSettings(f *form) (daemon.AWSSettings, bool) {
	s := daemon.AWSSettings{
		Region: f.Get("region"), Bucket: f.Get("bucket"), RoleName: f.Get("role_name"), KMSKeyID: f.Get("kms_key"),
		Endpoint: f.Get("endpoint"), S3Endpoint: f.Get("s3_endpoint"), ImportMode: f.Get("import_mode"),
	}
	f.require("region")
	keys := func(required bool) {
		id, secret := f.Get("access_key_id"), f.Values.Get("secret_access_key")
		if required && id == "" {
			f.fail("access_key_id", "required: the access key id of an IAM user the connector signs in as")
		}
		if (required || id != "") && secret == "" {
			f.fail("secret_access_key", "required with an access key id (it is never shown again: type it each time you register)")
		}
		s.AccessKeyID, s.SecretAccessKey = id, secret
	}
	switch f.Get("cred") {
	case "keys":
		keys(true)
	case "role":
		keys(false)
		s.AssumeRoleARN, s.ExternalID = f.Get("role_arn"), f.Get("external_id")
		if s.AssumeRoleARN == "" {
			f.fail("role_arn", "required: the ARN of the role the connector assumes")
		}
	case "instance":
	default:
		f.fail("cred", "choose how the connector signs in to AWS")
	}
	for _, e := range []string{"endpoint", "s3_endpoint"} {
		if v := f.Get(e); v != "" {
			if u, err := url.Parse(v); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				f.fail(e, "not a URL: want https://host[:port]")
			}
		}
	}
	if (s.Endpoint == "") != (s.S3Endpoint == "") {
		f.fail("s3_endpoint", "give both endpoints or neither: with only one, the connector would reach the real AWS for the other")
	}
	if ca := strings.TrimSpace(f.Values.Get("ca_pem")); ca != "" {
		if !strings.Contains(ca, "-----BEGIN CERTIFICATE-----") {
			f.fail("ca_pem", "not a PEM certificate: paste the text from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE-----")
		}
		s.CAPEM = []byte(ca + "\n")
	}
	if m := s.ImportMode; m != "" && m != "image" && m != "snapshot" {
		f.fail("import_mode", "choose image or snapshot")
	}
	return s, f.ok()
}

// awsFieldError places a registration error next to the field the API
// says it is about; one about the credential chain goes next to the choice
// of how the connector signs in, others above the form.
func awsFieldError(f *form, ae *api.Error) {
	if ae.Field == "" && strings.Contains(strings.ToLower(ae.Message), "credentials") {
		f.fail("cred", ae.Message)
		return
	}
	f.apiError(ae, awsFields)
}
