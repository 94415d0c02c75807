package web_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/replication"
	"github.com/rehost/rehost/pkg/store"
)

// The console in a real browser (Debian's chromium, headless): first boot,
// the wizard (AWS registration against the emulator, a source whose
// connection test fails next to its field and whose certificate is
// accepted by thumbprint, the catalog, the first job), a run followed live
// to COMPLETED and its AMI, and a failed run with its reason and what to
// do. Each page is checked for accessibility and saved as a screenshot in
// $REHOST_WEB_SCREENSHOTS (default a new temporary directory).
func TestConsoleInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run scripts/deps.sh (it installs Debian's chromium)")
	}
	h := start(t, apitest.Options{Unregistered: true})
	settings, err := h.Peers.AWSSettings()
	if err != nil {
		t.Fatal(err)
	}
	src := h.Peers.SourceInput()
	dir := os.Getenv("REHOST_WEB_SCREENSHOTS")
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rehost-console-screenshots-"); err != nil {
			t.Fatal(err)
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)

	actx, cancel := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.IgnoreCertErrors,
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1366, 860))
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	ctx, cancel = context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	b := &tab{t: t, ctx: ctx, base: h.URL, dir: dir}
	if _, err := chromedp.Call(ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Europe/Paris"}); err != nil {
		t.Fatal(err)
	}

	// First boot: every page leads to setup, which shows the fingerprint.
	b.open("/jobs")
	b.wantPath("/setup")
	if fp := b.text("#fingerprint"); fp != h.Fingerprint {
		t.Errorf("setup page shows fingerprint %q, want %q", fp, h.Fingerprint)
	}
	b.focusOrder("#f-password", "#f-confirm", "form[action='/setup'] button[type=submit]")
	b.shot("first-boot")
	b.typeIn("#f-password", "Summer2024!!")
	b.typeIn("#f-confirm", "Summer2024!!")
	b.submit("form[action='/setup'] button[type=submit]")
	b.wantFieldError("password", "common password")
	b.shot("first-boot-weak-password")
	b.typeIn("#f-password", testPassword)
	b.typeIn("#f-confirm", testPassword)
	b.submit("form[action='/setup'] button[type=submit]")

	// Wizard 1: AWS, with the emulator's endpoints and keys. A region that
	// is well formed but does not exist is refused next to the region, in
	// words, and the last setup's card says nothing was changed.
	b.wantPath("/wizard/aws")
	b.shot("wizard-aws")
	register := func(region string) {
		b.fill("#f-region", region)
		b.click("#f-cred-keys")
		b.fill("#f-access_key_id", settings.AccessKeyID)
		b.typeIn("#f-secret_access_key", settings.SecretAccessKey)
		if !evalAs[bool](b, `document.querySelector("details.advanced").open`) {
			b.click("details.advanced > summary")
		}
		b.fill("#f-endpoint", settings.Endpoint)
		b.fill("#f-s3_endpoint", settings.S3Endpoint)
		b.fill("#f-ca_pem", string(settings.CAPEM))
		b.submit("#aws-form button[type=submit]")
	}
	register("xx-nowhere-9")
	b.wantFieldError("region", "no such region: xx-nowhere-9")
	if n := evalAs[int](b, `document.querySelectorAll(".field .error").length`); n != 1 {
		t.Errorf("an unknown region: %d fields show an error, want only the region's", n)
	}
	if card := b.text("#last-h + *") + b.text("section[aria-labelledby=last-h]"); !strings.Contains(card, "Registration failed") ||
		!strings.Contains(card, "Nothing was changed") || strings.Contains(card, "already as it should be") {
		t.Errorf("the last setup's card after a failed registration contradicts itself or says too little:\n%s", card)
	}
	b.shot("wizard-aws-unknown-region")
	register(settings.Region)
	b.wantPath("/wizard/aws")
	if got := b.text("#last-h + *"); !strings.Contains(b.text("main"), "What the connector changed") {
		t.Errorf("no setup report after registering: %q", got)
	}
	if strings.Contains(b.html(), settings.SecretAccessKey) {
		t.Error("the AWS secret key is in the page after registering")
	}
	if card := b.text("section[aria-labelledby=last-h]"); !strings.Contains(card, "added inline policy") || strings.Contains(card, "(missing) set") {
		t.Errorf("the setup report's words:\n%s", card)
	}
	b.shot("wizard-aws-registered")

	// Wizard 2: a source. A wrong password fails its connection test, next
	// to the password field; without a thumbprint, the one vCenter presents
	// is shown to compare and accept.
	b.submit("p.next a")
	b.wantPath("/wizard/sources")
	b.fill("#f-name", "<script>alert(1)</script>")
	b.fill("#f-url", src.URL)
	b.fill("#f-user", src.User)
	b.typeIn("#f-password", src.Password)
	b.fill("#f-thumbprint", src.Thumbprint)
	b.submit("#source-form button[type=submit]")
	b.wantFieldError("name", "'<' is not allowed")
	b.shot("wizard-source-bad-name")
	b.fill("#f-name", "vc1")
	b.fill("#f-url", src.URL)
	b.fill("#f-user", src.User)
	b.typeIn("#f-password", "not-the-password")
	b.fill("#f-thumbprint", src.Thumbprint)
	b.submit("#source-form button[type=submit]")
	b.wantFieldError("password", "authentication failed")
	b.shot("wizard-source-connection-failed")
	// A thumbprint typed that is not the one vCenter presents is an error
	// that shows both, and the presented one is never put in the field.
	typed := strings.Repeat("AB:", 31) + "AB"
	b.fill("#f-thumbprint", typed)
	b.typeIn("#f-password", src.Password)
	b.submit("#source-form button[type=submit]")
	b.wantFieldError("thumbprint", "does not match")
	if msg := b.text("#f-thumbprint-error"); !strings.Contains(msg, typed) || !strings.Contains(msg, src.Thumbprint) {
		t.Errorf("the mismatch error does not show both thumbprints: %q", msg)
	}
	if got := evalAs[string](b, `document.getElementById("f-thumbprint").value`); got != typed {
		t.Errorf("after a mismatch the thumbprint field holds %q, want what was typed", got)
	}
	if evalAs[bool](b, `!!document.getElementById("offered-thumbprint") || !!document.getElementById("f-thumbprint_ok")`) {
		t.Error("a mismatched thumbprint is offered for acceptance")
	}
	b.shot("wizard-source-thumbprint-mismatch")
	b.fill("#f-thumbprint", "")
	b.typeIn("#f-password", src.Password)
	b.submit("#source-form button[type=submit]")
	b.wantFieldError("thumbprint", "does not trust")
	if got := b.text("#offered-thumbprint"); got != src.Thumbprint {
		t.Errorf("offered thumbprint %q, want the simulator's %q", got, src.Thumbprint)
	}
	b.shot("wizard-source-thumbprint")
	b.click("#f-thumbprint_ok")
	b.typeIn("#f-password", src.Password)
	b.submit("#source-form button[type=submit]")
	b.wantPath("/wizard/sources")
	if !strings.Contains(b.text("main"), "Added vc1") {
		t.Fatalf("source not added: %s", b.text("main"))
	}
	b.submit("td.actions form[action$='/test'] button")
	if !strings.Contains(b.text("main"), "Connection test passed") {
		t.Errorf("connection test of the stored source: %s", b.text("main"))
	}
	b.shot("wizard-sources")

	// Wizard 3: the catalog.
	b.submit("p.next a")
	b.wantPath("/wizard/catalog")
	b.submit("#import-form button")
	if !strings.Contains(b.text("#import-result"), "Imported 3 servers") {
		t.Fatalf("import: %q", b.text("#import-result"))
	}
	b.shot("wizard-catalog")

	// Wizard 4: the first job, its first run an hour ahead in the
	// browser's time zone (Paris): the connector must read it as such.
	servers := b.serverIDs()
	b.submit("p.next a")
	b.wantPath("/wizard/job")
	first := time.Now().Add(time.Hour).Truncate(time.Minute)
	paris, _ := time.LoadLocation("Europe/Paris")
	b.fill("#f-server", servers["web-01"])
	b.fill("#f-frequency", "24")
	b.fill("#f-keep", "2")
	b.fill("#f-seed", first.In(paris).Format("2006-01-02T15:04"))
	b.shot("wizard-job")
	b.submit("#job-form button[type=submit]")
	if !strings.HasPrefix(b.path(), "/jobs/sms-job-") {
		t.Fatalf("after creating the job: %s\n%s", b.path(), b.text("main"))
	}
	job := strings.TrimPrefix(b.path(), "/jobs/")
	if seed := b.attr("dl.pairs time", "datetime"); seed != first.UTC().Format(time.RFC3339) {
		t.Errorf("first run stored as %s, want %s (the browser's local time in Paris)", seed, first.UTC().Format(time.RFC3339))
	}
	if !strings.Contains(b.text("main"), "Setup is complete") {
		t.Errorf("no word that setup is complete: %s", b.text("main"))
	}

	// A second job whose exports break, started first: its run fails.
	for range 10 {
		if err := h.Peers.Sim.FailExport("app-01", 0, 16<<10); err != nil {
			t.Fatal(err)
		}
	}
	b.open("/jobs/new?server=" + servers["app-01"])
	b.fill("#f-seed", first.In(paris).Format("2006-01-02T15:04"))
	b.fill("#f-frequency", "30")
	b.submit("#job-form button[type=submit]")
	b.wantFieldError("frequency", "from 1 to 24")
	b.shot("job-new-invalid")
	b.fill("#f-frequency", "6")
	b.fill("#f-description", strings.Repeat("x", 100<<10))
	b.submit("#job-form button[type=submit]")
	b.wantFieldError("description", "102400 characters, want at most 255")
	b.shot("job-new-description-too-long")
	word := strings.Repeat("w", 255)
	b.fill("#f-description", word)
	b.submit("#job-form button[type=submit]")
	failing := strings.TrimPrefix(b.path(), "/jobs/")
	if !strings.Contains(b.text("dl.pairs"), word) {
		t.Errorf("the job page does not show its description")
	}
	b.shot("job-long-description") // the shot fails a page wider than the window

	// The overview, opened before the run starts, shows it once it does.
	b.open("/")
	if !strings.Contains(b.text("#live-runs"), "No run is in progress") {
		t.Errorf("runs in progress before any started: %q", b.text("#live-runs"))
	}
	b.eval(`window.__sameDocument = true`)
	if _, err := h.D.Sched.Trigger(context.Background(), failing); err != nil {
		t.Fatal(err)
	}
	b.waitFor(`document.querySelector("#live-runs .live-run") !== null`, 20*time.Second)
	if !evalAs[bool](b, `window.__sameDocument === true`) {
		t.Error("the overview reloaded: the run must show up in place")
	}
	// It names the run's step by its title from the step table, never by
	// the step's internal name.
	var titles, names []string
	for _, s := range replication.Steps() {
		titles = append(titles, s.Title)
	}
	for _, s := range replication.Steps() {
		// A name that is also a word of a title ("snapshot") proves nothing.
		inTitle := regexp.MustCompile(`\b` + regexp.QuoteMeta(s.Name) + `\b`)
		if !slices.ContainsFunc(titles, inTitle.MatchString) {
			names = append(names, regexp.QuoteMeta(s.Name))
		}
	}
	b.waitFor(fmt.Sprintf(`(() => { const p = document.querySelector("#live-runs .live-run p")?.innerText || "";
		return %s.some(t => p.includes(t)); })()`, jsStrings(titles)), 20*time.Second)
	if live := b.text("#live-runs"); regexp.MustCompile(`\b(` + strings.Join(names, "|") + `)\b`).MatchString(live) {
		t.Errorf("the overview's runs in progress name a step by its internal name:\n%s", live)
	}
	b.shot("overview-run-started")

	// Start the first job now and follow its run live, without a reload,
	// to COMPLETED.
	b.open("/jobs/" + job)
	b.submit("form[action$='/start'] button")
	b.eval(`window.__sameDocument = true`)
	b.waitFor(`document.querySelector("#live-h ~ [aria-live] .disk progress") !== null`, 30*time.Second)
	b.shot("job-run-in-progress")
	b.waitFor(`(document.querySelector("#live-h ~ [aria-live]")?.textContent || "").includes("COMPLETED")`, 60*time.Second)
	if !evalAs[bool](b, `window.__sameDocument === true`) {
		t.Error("the page reloaded: the run's progress must update in place")
	}
	ami := b.text("#live-h ~ [aria-live] .ami")
	if !regexp.MustCompile(`^ami-[0-9a-f]+$`).MatchString(ami) {
		t.Fatalf("no AMI shown when the run completed: %q", ami)
	}
	b.open("/jobs/" + job)
	if got := b.text("#amis tbody .ami"); got != ami {
		t.Errorf("the job's AMIs show %q, want %q", got, ami)
	}
	if !strings.Contains(b.text("#amis"), "available") || !strings.Contains(b.text("main"), "keeps the 2 most recent AMIs") {
		t.Errorf("AMIs with retention: %s", b.text("#amis"))
	}
	b.shot("job-ami")
	// Its events, one with a time written in its message (a resume): every
	// time in the same format, the browser's.
	b.submit("form[action$='/pause'] button")
	b.submit("form[action$='/resume'] button")
	if ev := b.text("#events-h ~ ul.events"); !strings.Contains(ev, "next run at") || regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:`).MatchString(ev) ||
		strings.Contains(ev, "UTC") {
		t.Errorf("events with times in two formats:\n%s", ev)
	}
	b.submit("#runs-h ~ table tbody a")
	b.waitFor(`document.querySelector("#live .steps li.done") !== null`, 5*time.Second)
	b.shot("run-completed")

	// The failed run: its reason and what to do.
	b.open("/jobs/" + failing)
	b.submit("#runs-h ~ table tbody a")
	b.waitFor(`(document.querySelector("#live")?.textContent || "").includes("Why it failed")`, 60*time.Second)
	if txt := b.text("#live .failure"); !strings.Contains(txt, "What to do") || !strings.Contains(txt, "stage") {
		t.Errorf("failed run: %q", txt)
	}
	b.shot("run-failed")

	// The dashboard's other pages.
	b.open("/")
	b.shot("overview")
	b.open("/servers?q=01&jobs=with")
	if n := evalAs[int](b, `document.querySelectorAll("main table tbody tr").length`); n != 2 {
		t.Errorf("servers with a job matching 01: %d rows, want 2", n)
	}
	b.shot("servers-filtered")
	b.open("/jobs")
	b.shot("jobs")

	// An application of the replicated web-01: created from the form,
	// sized by a CSV file (a bad row refused by row and column), its
	// template shown, launched as a test and as the cutover, each server's
	// boot check followed live to booted, the test terminated alone.
	b.open("/apps")
	b.fill("#f-name", "shop")
	b.fill("#f-groups", "web: web-01")
	b.submit("#app-form button[type=submit]")
	if !strings.HasPrefix(b.path(), "/apps/app-") {
		t.Fatalf("after creating the app: %s\n%s", b.path(), b.text("main"))
	}
	csv := filepath.Join(t.TempDir(), "shop.csv")
	writeCSV := func(row string) {
		if err := os.WriteFile(csv, []byte("Server,Instance Type,Subnet,Security Groups,Volume Type,Tags\n"+row+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		b.do("choose the CSV", chromedp.SetUploadFiles(chromedp.CSS("#f-csv_file"), []string{csv}))
		b.submit("#rightsizing-form button[type=submit]")
	}
	writeCSV("web-01,t3.tiny,,,gp3,tier=web")
	b.wantFieldError("csv_file", `row 2, column instance type: "t3.tiny"`)
	b.shot("app-rightsizing-error")
	writeCSV("web-01,t3.small,,,gp3,tier=web")
	if got := b.text("table.launch-config td.itype"); got != "t3.small" || !strings.Contains(b.text("main"), "Imported the rightsizing CSV") {
		t.Errorf("the launch configuration after the CSV: %q\n%s", got, b.text("main"))
	}
	b.submit("#template-form button[value=show]")
	if tpl := b.text("#template"); !strings.Contains(tpl, "AWS::EC2::Instance") || !strings.Contains(tpl, ami) {
		t.Errorf("the template shown does not launch %s:\n%s", ami, tpl)
	}
	b.shot("app-template")
	b.submit("#launch-test")
	b.submit("#launch-cutover")
	b.eval(`window.__sameDocument = true`)
	b.waitFor(`(() => { const ls = [...document.querySelectorAll("#launches .launch")];
		return ls.length === 2 && ls.every(l => l.querySelector(".badge")?.textContent === "LAUNCHED" && l.querySelector(".boot-verdict .badge")?.textContent === "booted"); })()`, 2*time.Minute)
	if !evalAs[bool](b, `window.__sameDocument === true`) {
		t.Error("the app page reloaded: its launches must update in place")
	}
	b.shot("app-launched")
	b.submit("#launches .launch-test a[href*='/terminate']")
	b.shot("app-terminate-test")
	b.submit("main form button.danger")
	b.waitFor(`document.querySelector("#launches .launch-test .badge")?.textContent === "TERMINATED"`, time.Minute)
	if got := b.text("#launches .launch-cutover h3 .badge"); got != "LAUNCHED" {
		t.Errorf("the cutover after the test launch was terminated: %q", got)
	}
	b.open("/apps")
	if got := b.text("#apps tbody .launch .badge"); got != "LAUNCHED" {
		t.Errorf("the app's launch status in the list: %q\n%s", got, b.text("#apps"))
	}
	b.shot("apps")

	// On its own (SQLite) the connector is no fleet.
	b.open("/fleet")
	if !strings.Contains(b.text("#fleet-alone"), "not part of a fleet") {
		t.Errorf("fleet page of a connector on its own: %s", b.text("main"))
	}
	b.shot("fleet-alone")
	// A source stored before names were checked, with a '/' in its name,
	// is tested and removed: the console addresses it by its id.
	legacy, err := h.D.AddSource(context.Background(), daemon.SourceInput{Kind: store.SourceVSphere, Name: "legacy/<b>vc</b>", URL: src.URL,
		User: src.User, Password: src.Password, Thumbprint: src.Thumbprint})
	if err != nil {
		t.Fatal(err)
	}
	row := "#source-" + legacy.ID
	b.open("/sources")
	b.submit(row + " form[action$='/test'] button")
	if got := b.text(row + "-result"); !strings.Contains(got, "Connection test passed") {
		t.Errorf("testing the source named %q: %q", legacy.Name, got)
	}
	b.submit(row + " a[href$='/remove']")
	b.wantPath("/sources/" + legacy.ID + "/remove")
	b.shot("source-remove")
	b.submit("main form button.danger")
	if got := b.text("main"); !strings.Contains(got, "Removed source "+legacy.Name) || strings.Contains(b.text("main table"), "legacy/") {
		t.Errorf("removing the source named %q:\n%s", legacy.Name, got)
	}
	b.open("/health")
	b.submit("#backup-now")
	if got := b.text("#backup"); !strings.Contains(got, "Backed up the state to s3://") || !strings.Contains(b.text("#backup-last"), "s3://") {
		t.Errorf("backing up to the bucket: %s", got)
	}
	b.shot("health")
	b.submit("#backup-key a")
	b.shot("backup-key-confirm")
	b.submit("main form button.danger")
	if code := b.text("#recovery-code"); code == "" {
		t.Error("no recovery code shown after the confirmation")
	}
	b.open("/health")
	if !strings.Contains(b.text("#backup-key"), "RECORDED") || strings.Contains(b.text("#backup-key"), "NOT RECORDED") {
		t.Errorf("the recovery code once shown: %s", b.text("#backup-key"))
	}
	b.open("/keys")
	b.fill("#f-name", "laptop")
	b.submit("#key-form button[type=submit]")
	secret := b.text("#new-key-secret")
	b.shot("keys-created")
	b.open("/keys")
	if secret == "" || strings.Contains(b.html(), secret) {
		t.Errorf("the new key's secret (%q) is shown again", secret)
	}
	// The bandwidth cap: shown on the overview, set on its form, refused
	// next to the field with what is wrong, then in force in the daemon.
	b.open("/")
	if got := b.text("#bandwidth-cap"); !strings.Contains(got, "no cap") || b.text("#bandwidth-throughput") == "" {
		t.Errorf("overview's bandwidth: %q, %q", got, b.text("#bandwidth-throughput"))
	}
	b.open("/bandwidth")
	b.fill("#f-default", "1Gbit")
	b.fill("#f-zone", "Europe/Paris")
	b.fill("#f-windows", "Mon-Fri 08:00-18:00 20Mbit\nWed 12:00-13:00 1Gbit")
	b.submit("#bandwidth-save")
	b.wantFieldError("windows", "overlap at Wed 12:00")
	b.shot("bandwidth-overlap")
	b.fill("#f-windows", "Mon-Fri 08:00-18:00 20Mbit")
	b.submit("#bandwidth-save")
	b.wantPath("/bandwidth")
	if got := evalAs[string](b, `document.querySelector("#f-windows").value`); got != "Mon-Fri 08:00-18:00 20 Mbit/s" {
		t.Errorf("saved windows shown as %q", got)
	}
	if got := b.text("#bandwidth-cap"); !strings.Contains(got, "bit/s") {
		t.Errorf("cap in force: %q", got)
	}
	b.shot("bandwidth")
	for deadline := time.Now().Add(10 * time.Second); h.D.Bandwidth.Schedule() == nil && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
	}
	if s := h.D.Bandwidth.Schedule(); s == nil || s.Spec().Default != "1 Gbit/s" || len(s.Spec().Windows) != 1 {
		t.Errorf("the daemon's cap after the form: %+v", s)
	}

	b.open("/support")
	b.shot("support")
	if times := evalAs[int](b, `[...document.querySelectorAll("time")].filter(t => t.textContent.endsWith("UTC")).length`); times != 0 {
		t.Errorf("%d times left in UTC with JavaScript on", times)
	}
	if !strings.Contains(b.text("footer"), "Europe/Paris") {
		t.Errorf("footer: %q, want the browser's zone", b.text("footer"))
	}
	b.submit("form.logout button")
	b.wantPath("/login")
	b.shot("login")
}

// jsStrings is a JavaScript array of the strings.
func jsStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// tab drives the browser's tab.
type tab struct {
	t    *testing.T
	ctx  context.Context
	base string
	dir  string
	n    int
}

func (b *tab) do(what string, a ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	if err := chromedp.Do(b.ctx, a...); err != nil {
		b.t.Fatalf("%s: %v (page %s)", what, err, b.path())
	}
}

func (b *tab) open(path string) {
	b.t.Helper()
	b.do("open "+path, chromedp.Navigate(b.base+path))
}

// submit clicks what submits a form (or follows a link) and waits for the
// next page.
func (b *tab) submit(css string) {
	b.t.Helper()
	if _, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(css))); err != nil {
		b.t.Fatalf("click %s: %v (page %s)", css, err, b.path())
	}
}

func (b *tab) click(css string) { b.t.Helper(); b.do("click "+css, chromedp.Click(chromedp.CSS(css))) }

// fill sets a field's value; typeIn types it, key by key.
func (b *tab) fill(css, v string) {
	b.t.Helper()
	b.eval(fmt.Sprintf(`document.querySelector(%q).value = %q`, css, v))
}

func (b *tab) typeIn(css, v string) {
	b.t.Helper()
	b.fill(css, "")
	b.do("type in "+css, chromedp.SendKeys(chromedp.CSS(css), v))
}

func (b *tab) eval(js string) {
	b.t.Helper()
	b.do("evaluate", chromedp.Evaluate[chromedp.Void](js))
}

// evalAs evaluates JavaScript on the page and decodes its value.
func evalAs[T any](b *tab, js string) T {
	b.t.Helper()
	v, err := chromedp.Run(b.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", js, err)
	}
	return v
}

func (b *tab) text(css string) string {
	return evalAs[string](b, fmt.Sprintf(`(document.querySelector(%q)?.innerText || "").trim()`, css))
}

func (b *tab) attr(css, name string) string {
	return evalAs[string](b, fmt.Sprintf(`document.querySelector(%q)?.getAttribute(%q) || ""`, css, name))
}

func (b *tab) html() string { return evalAs[string](b, `document.documentElement.outerHTML`) }

// waitFor waits until a JavaScript predicate holds on the page.
func (b *tab) waitFor(predicate string, timeout time.Duration) {
	b.t.Helper()
	if _, err := chromedp.Run(b.ctx, chromedp.Poll[chromedp.Void](predicate, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		b.t.Fatalf("waiting for %s: %v\npage %s:\n%s", predicate, err, b.path(), b.text("main"))
	}
}

func (b *tab) path() string {
	loc, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`location.pathname`))
	if err != nil {
		return "?"
	}
	return loc
}

func (b *tab) wantPath(p string) {
	b.t.Helper()
	if got := b.path(); got != p {
		b.t.Fatalf("at %s, want %s:\n%s", got, p, b.text("main"))
	}
}

// wantFieldError checks that a field's error is shown next to it: inside
// the field's own block, right after the control, and tied to it by
// aria-describedby and aria-invalid.
func (b *tab) wantFieldError(field, want string) {
	b.t.Helper()
	msg := b.text("#f-" + field + "-error")
	if !strings.Contains(msg, want) {
		b.t.Fatalf("error next to %s: %q, want it to say %q\npage:\n%s", field, msg, want, b.text("main"))
	}
	ok := evalAs[bool](b, fmt.Sprintf(`(() => {
		const f = document.getElementById("f-%[1]s"), e = document.getElementById("f-%[1]s-error");
		return f.closest(".field") === e.closest(".field") && f.getAttribute("aria-invalid") === "true" &&
			(f.getAttribute("aria-describedby") || "").split(" ").includes("f-%[1]s-error") &&
			!!(f.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING);
	})()`, field))
	if !ok {
		b.t.Errorf("the error of %s is not next to its field (same block, after it, aria-describedby, aria-invalid)", field)
	}
}

// serverIDs maps the catalog's VM names to server ids, from the page.
func (b *tab) serverIDs() map[string]string {
	b.t.Helper()
	m, err := chromedp.Run(b.ctx, chromedp.Evaluate[map[string]string](`Object.fromEntries([...document.querySelectorAll("main table tbody th")].map(th =>
		[th.firstChild.textContent.trim(), th.querySelector(".sub code").textContent]))`))
	if err != nil || len(m) != 3 {
		b.t.Fatalf("servers on the page: %v %v", m, err)
	}
	return m
}

// focusOrder checks that tabbing from the top reaches the skip link first,
// then the given controls in order, each with a visible focus outline.
func (b *tab) focusOrder(css ...string) {
	b.t.Helper()
	b.eval(`document.activeElement.blur(); window.scrollTo(0, 0)`)
	focused := func() string {
		b.do("tab", chromedp.KeyEvent(kb.Tab))
		return b.attrOfFocus()
	}
	if got := focused(); !strings.Contains(got, "skip") {
		b.t.Errorf("first Tab focuses %q, want the skip link", got)
	}
	for _, want := range css {
		id := evalAs[string](b, fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e.id || e.outerHTML.slice(0, 60); })()`, want))
		found := false
		for range 12 {
			if got := focused(); got == id {
				found = true
				break
			}
		}
		if !found {
			b.t.Errorf("tabbing never reached %s in order", want)
			continue
		}
		if evalAs[string](b, `getComputedStyle(document.activeElement).outlineStyle`) == "none" {
			b.t.Errorf("%s has no visible focus outline", want)
		}
	}
}

func (b *tab) attrOfFocus() string {
	return evalAs[string](b, `(() => { const e = document.activeElement; return e.id || (e.className === "skip" ? "skip" : e.outerHTML.slice(0, 60)); })()`)
}

// shot checks the page's accessibility and saves a screenshot of it.
func (b *tab) shot(name string) {
	b.t.Helper()
	problems, err := chromedp.Run(b.ctx, chromedp.Evaluate[[]string](a11yCheck))
	if err != nil {
		b.t.Fatal(err)
	}
	for _, p := range problems {
		b.t.Errorf("accessibility of %s (%s): %s", name, b.path(), p)
	}
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatal(err)
	}
	b.n++
	if err := os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("%02d-%s.png", b.n, name)), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// a11yCheck lists what a page gets wrong: controls without a label or
// name, images without alt, headings, ids, references, positive tabindex,
// text contrast under WCAG AA, and a page wider than the window.
const a11yCheck = `(() => {
  const problems = [];
  const visible = e => !!(e.offsetWidth || e.offsetHeight || e.getClientRects().length);
  for (const el of document.querySelectorAll("input, select, textarea")) {
    if (el.type === "hidden") continue;
    const labelled = (el.id && document.querySelector('label[for="' + CSS.escape(el.id) + '"]')) || el.closest("label") ||
      el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    if (!labelled) problems.push("a control without a label: " + (el.name || el.outerHTML.slice(0, 80)));
  }
  for (const img of document.querySelectorAll("img")) if (!img.hasAttribute("alt")) problems.push("an image without alt: " + img.src);
  for (const el of document.querySelectorAll("a[href], button")) {
    if (visible(el) && !el.textContent.trim() && !el.getAttribute("aria-label")) problems.push("a control without a name: " + el.outerHTML.slice(0, 80));
  }
  if (document.querySelectorAll("h1").length !== 1) problems.push("want one h1, have " + document.querySelectorAll("h1").length);
  if (!document.documentElement.lang) problems.push("no lang on html");
  if (!document.title) problems.push("no title");
  const ids = new Set();
  for (const el of document.querySelectorAll("[id]")) { if (ids.has(el.id)) problems.push("duplicate id " + el.id); ids.add(el.id); }
  for (const el of document.querySelectorAll("[aria-describedby]"))
    for (const id of el.getAttribute("aria-describedby").split(/\s+/)) if (id && !document.getElementById(id)) problems.push("aria-describedby names a missing " + id);
  for (const el of document.querySelectorAll("[tabindex]")) if (el.tabIndex > 0) problems.push("a positive tabindex breaks the focus order: " + el.outerHTML.slice(0, 60));
  const rgb = s => { const m = s.match(/[\d.]+/g); return m ? m.map(Number) : [0, 0, 0, 0]; };
  const lum = c => { const [r, g, b] = c.slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); }); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
  // The background a text is drawn on: the element's and its ancestors'
  // backgrounds composited, translucent ones over what is below them.
  const background = el => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      const alpha = c.length < 4 ? 1 : c[3];
      if (alpha > 0) layers.push([c[0], c[1], c[2], alpha]);
      if (alpha >= 1) break;
    }
    let out = [255, 255, 255];
    for (const [r, g, b, a] of layers.reverse()) out = [r * a + out[0] * (1 - a), g * a + out[1] * (1 - a), b * a + out[2] * (1 - a)];
    return out;
  };
  const seen = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const el = n.parentElement;
    if (!n.textContent.trim() || seen.has(el) || !visible(el) || el.closest(".sr, .skip, noscript, option")) continue;
    seen.add(el);
    const st = getComputedStyle(el);
    const fg = rgb(st.color), bg = background(el);
    const [a, b] = [lum(fg), lum(bg)].sort((x, y) => y - x);
    const ratio = (a + 0.05) / (b + 0.05);
    const size = parseFloat(st.fontSize), bold = parseInt(st.fontWeight) >= 700;
    const need = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) problems.push("contrast " + ratio.toFixed(2) + " < " + need + ": " + JSON.stringify(n.textContent.trim().slice(0, 40)));
  }
  if (document.documentElement.scrollWidth > window.innerWidth + 1) problems.push("the page is wider than the window: " + document.documentElement.scrollWidth + " > " + window.innerWidth);
  return problems;
})()`
