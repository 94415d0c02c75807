package web_test

import (
	"context"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
)

// The state backups on the health page: the recovery code not recorded,
// backups daily; a backup to the staging bucket (versitygw) shown with its
// location; a backup downloaded; the recovery code shown only after its
// confirmation, the same the API gives, after which the page says it is
// recorded.
func TestBackupOnHealthPage(t *testing.T) {
	h := start(t, apitest.Options{})
	b := h.browser()
	b.setup()
	a := b.get("/health")
	if !strings.Contains(a.body, "NOT RECORDED") || !strings.Contains(a.body, "every 24 h to the staging bucket") {
		t.Errorf("health page before any backup:\n%s", a.body)
	}
	a = b.submit("/health", "/backup/bucket", nil)
	if a.status != http.StatusSeeOther {
		t.Fatalf("backup: %d\n%s", a.status, a.body)
	}
	a = b.get("/health")
	m := regexp.MustCompile(`Backed up the state to (s3://[^ ]+) \(`).FindStringSubmatch(a.body)
	if m == nil || !regexp.MustCompile(`id="backup-last"><span class="badge ok">OK</span>.*<code>`+regexp.QuoteMeta(m[1])+`</code>`).MatchString(a.body) {
		t.Fatalf("health page after a backup:\n%s", a.body)
	}
	st, err := (&api.Local{D: h.D}).GetConnectorStatus(context.Background(), &api.GetConnectorStatusInput{})
	if err != nil || st.Backup.Last == nil || st.Backup.Last.Location != m[1] {
		t.Errorf("the status's last backup %+v, the page's %s (%v)", st.Backup.Last, m[1], err)
	}
	a = b.submit("/health", "/backup/download", nil)
	if a.status != http.StatusOK || !strings.Contains(a.header.Get("Content-Disposition"), "attachment") || len(a.body) < 1024 {
		t.Errorf("download: %d %v, %d bytes", a.status, a.header, len(a.body))
	}

	a = b.get("/backup/key")
	if a.status != http.StatusOK || strings.Contains(a.body, `id="recovery-code"`) || !strings.Contains(a.body, `action="/backup/key"`) {
		t.Errorf("the confirmation shows the code, or no button:\n%s", a.body)
	}
	a = b.submit("/backup/key", "/backup/key", nil)
	code := regexp.MustCompile(`id="recovery-code">([^<]+)<`).FindStringSubmatch(a.body)
	want, err := (&api.Local{D: h.D}).GetBackupKey(context.Background(), &api.GetBackupKeyInput{})
	if err != nil || code == nil || code[1] != want.RecoveryCode || a.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("the recovery code shown %v, want %q (%v); Cache-Control %q", code, want.RecoveryCode, err, a.header.Get("Cache-Control"))
	}
	if a := b.get("/health"); !strings.Contains(a.body, `badge ok">RECORDED`) || strings.Contains(a.body, want.RecoveryCode) {
		t.Errorf("health page after the code was shown:\n%s", a.body)
	}
}
