package web

import (
	"fmt"
	"net/http"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/connector/api"
)

// The state backups, on the health page: their status, a backup now to
// the staging bucket or downloaded, and the recovery code shown behind a
// confirmation.

func (c *Console) backupToBucket(w http.ResponseWriter, r *http.Request, rq *request) error {
	out, err := c.svc.BackupStateToBucket(r.Context(), &api.BackupStateToBucketInput{})
	if err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		return c.flashTo(w, r, rq, "/health#backup-h", flash{Kind: "error", Target: "backup", Message: "The backup failed: " + ae.Message})
	}
	c.log.Info("console: state backed up to the bucket", "location", out.Location, "bytes", out.Bytes)
	return c.flashTo(w, r, rq, "/health#backup-h", flash{Kind: "ok", Target: "backup",
		Message: fmt.Sprintf("Backed up the state to %s (%s).", out.Location, humanize.IBytes(uint64(max(out.Bytes, 0))))})
}

func (c *Console) backupDownload(w http.ResponseWriter, r *http.Request, rq *request) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="rehost-state-`+time.Now().UTC().Format("20060102T150405Z")+`.backup"`)
	w.Header().Set("Cache-Control", "no-store")
	if err := c.svc.BackupState(r.Context(), w); err != nil {
		// The headers are gone: the truncated file tells the browser.
		c.log.Error("console: state backup", "err", err)
	}
	c.log.Info("console: state backup downloaded", "remote", remoteIP(r))
	return nil
}

func (c *Console) backupKeyPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	v := &view{Title: "The backups' recovery code", Nav: "health"}
	return c.render(w, r, rq, http.StatusOK, v, backupKeyPage(v, ""))
}

func (c *Console) backupKeyShow(w http.ResponseWriter, r *http.Request, rq *request) error {
	k, err := c.svc.GetBackupKey(r.Context(), &api.GetBackupKeyInput{})
	if err != nil {
		return err
	}
	c.log.Warn("console: the backups' recovery code was shown", "remote", remoteIP(r))
	// Answered directly, never redirected: the code must not wait in a
	// session for a later page. The page is not cached (no-store).
	v := &view{Title: "The backups' recovery code", Nav: "health"}
	return c.render(w, r, rq, http.StatusOK, v, backupKeyPage(v, k.RecoveryCode))
}

// everyText is an interval in whole hours when it is some, else as a
// duration.
func everyText(secs int64) string {
	if secs%3600 == 0 {
		return fmt.Sprintf("%d h", secs/3600)
	}
	return (time.Duration(secs) * time.Second).String()
}
