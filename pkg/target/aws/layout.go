package aws

import (
	"fmt"
	"strings"

	"github.com/rehost/rehost/pkg/disk"
)

// The staging layout, defined here once: every object rehost stages lives
// under StagingPrefix, which is also the prefix of the bucket's lifecycle
// rule (7-day expiry, 1-day abort of incomplete uploads), and each run's
// objects under RunPrefix, so one sweep of that prefix removes them all.
//
//	rehost/<job>/<run>/disk-<n>.<format>
const StagingPrefix = "rehost/"

// RunPrefix is the prefix of every object of one run. Ids are cleaned so
// that no job or run id can reach outside StagingPrefix or into another
// run's prefix.
func RunPrefix(job, run string) string {
	return StagingPrefix + clean(job) + "/" + clean(run) + "/"
}

// StagingKey is the object key of disk i of a run, staged in format f.
func StagingKey(job, run string, i int, f disk.Format) string {
	ext := strings.TrimPrefix(string(f), ".")
	if ext == "" {
		ext = string(disk.Raw)
	}
	return RunPrefix(job, run) + fmt.Sprintf("disk-%d.%s", i, clean(ext))
}

// TemplatePrefix holds the CloudFormation templates (and change set
// templates) generated for applications, one folder per application,
// under the staging lifecycle: a template is regenerated whenever asked.
const TemplatePrefix = StagingPrefix + "templates/"

// TemplateKey is the object key of an application's template file.
func TemplateKey(appID, file string) string { return TemplatePrefix + clean(appID) + "/" + clean(file) }

// clean makes s one safe path segment: no separators, control characters,
// "." or "..", never empty.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r < 0x20 || r == 0x7f {
			return '_'
		}
		return r
	}, s)
	if s == "" || s == "." || s == ".." {
		return "_"
	}
	return s
}
