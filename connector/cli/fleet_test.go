package cli

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
	"github.com/rehost/rehost/connector/api/client"
	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/internal/lab/pgpeer/pgtest"
	"github.com/rehost/rehost/internal/lab/proxy"
	"github.com/rehost/rehost/pkg/store"
	"github.com/rehost/rehost/scheduler"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// serveAsync runs `rehost serve` in the test's process until the test
// ends; its exit code is sent on the channel once it stops.
func serveAsync(t *testing.T, args ...string) (<-chan int, *apitest.SyncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	stopped := make(chan struct{})
	errs := &apitest.SyncBuffer{}
	go func() {
		defer close(stopped)
		code <- Main(ctx, Env{Stdin: strings.NewReader(""), Stdout: &bytes.Buffer{}, Stderr: errs}, append([]string{"serve"}, args...))
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-stopped:
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop")
		}
	})
	return code, errs
}

// A fleet through the CLI and the API: a connector on PostgreSQL, a second
// joining it with 'rehost fleet join' (the key sealed for it), both listed
// by GetConnectors and 'rehost fleet status'; a third with the second's id
// refused; DisassociateConnector stops the second; the support bundle and
// the metrics show the fleet.
func TestFleetJoinStatusAndDisassociate(t *testing.T) {
	clearServeEnv(t)
	db := pgtest.NewDB(t)
	t.Setenv(daemon.EnvStorePassword, db.Password)
	sc := &daemon.StoreConfig{URL: db.URL, CAFile: db.CAFile}
	c := apitest.Start(t, apitest.Options{Store: sc, Fleet: &daemon.FleetOptions{ID: "c-one", TTL: 3 * time.Second}})
	apiEnv(t, c)
	fp := "--fingerprint=" + c.Fingerprint

	// The second connector joins from an empty state directory.
	two := filepath.Join(t.TempDir(), "two")
	out, errs, code := walk(t, "fleet", "join", fp, "--from", c.URL, "--state-dir", two)
	if code != 0 || !strings.Contains(out, "ready to join") {
		t.Fatalf("fleet join: %d %s %s", code, out, errs)
	}
	key1, _ := os.ReadFile(filepath.Join(c.Dir, "master.key"))
	key2, _ := os.ReadFile(filepath.Join(two, "master.key"))
	if len(key1) != 32 || !bytes.Equal(key1, key2) {
		t.Fatal("the joined connector does not hold the fleet's key")
	}
	if b, _ := os.ReadFile(filepath.Join(two, "store.json")); bytes.Contains(b, []byte(db.Password)) {
		t.Error("store.json holds the password")
	}
	// Joining into a directory with state of its own is refused.
	own := t.TempDir()
	if d, err := daemon.Open(context.Background(), own, daemon.Options{Scheduler: scheduler.Options{Passive: true}}); err != nil {
		t.Fatal(err)
	} else {
		d.Close()
	}
	if _, errs, code := walk(t, "fleet", "join", fp, "--from", c.URL, "--state-dir", own); code != 1 || !strings.Contains(errs, "rehost store migrate") {
		t.Errorf("join into a state directory of its own: %d %s", code, errs)
	}
	served, serveErrs := serveAsync(t, "--state-dir", two, "--listen", "127.0.0.1:0", "--connector-id", "c-two", "--lease-ttl", "3s", "--log-format", "text")

	cl, err := client.New(client.Options{Endpoint: c.URL, Region: c.Region, Fingerprint: c.Fingerprint, Credentials: credentials.NewStaticCredentialsProvider(c.Key.ID, c.Key.Secret, "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var conns *api.GetConnectorsOutput
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		conns, err = cl.GetConnectors(ctx, &api.GetConnectorsInput{})
		if err == nil && len(conns.ConnectorList) == 2 && conns.ConnectorList[1].VmManagerName != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GetConnectors = %+v, %v; serve: %s", conns, err, serveErrs)
		}
	}
	for i, want := range []string{"c-one", "c-two"} {
		cn := conns.ConnectorList[i]
		if cn.ConnectorID != want || cn.Status != api.ConnectorHealthy || cn.Version == "" || cn.VmManagerName != "vcenter" ||
			len(cn.SourceList) != 1 || cn.AssociatedOn.IsZero() {
			t.Errorf("connector %d = %+v", i, cn)
		}
	}
	out, errs, code = walk(t, "fleet", "status", fp)
	if code != 0 || !strings.Contains(out, "c-one") || !strings.Contains(out, "c-two") || !strings.Contains(out, "HEALTHY") || !strings.Contains(out, "(schedules)") {
		t.Errorf("fleet status: %d\n%s\n%s", code, out, errs)
	}
	out, _, _ = walk(t, "fleet", "status", fp, "--json")
	var st api.FleetStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil || len(st.Members) != 2 || st.Leader == "" || st.LeaseTTLSeconds != 3 {
		t.Errorf("fleet status --json: %v %+v", err, st)
	}

	// A third connector with the second's id is refused while it lives.
	three := filepath.Join(t.TempDir(), "three")
	if _, errs, code := walk(t, "fleet", "join", fp, "--from", c.URL, "--state-dir", three); code != 0 {
		t.Fatalf("fleet join three: %s", errs)
	}
	_, errs, code = walk(t, "serve", "--state-dir", three, "--listen", "127.0.0.1:0", "--connector-id", "c-two", "--lease-ttl", "3s")
	if code != 1 || !strings.Contains(errs, "c-two is in use by another connector") {
		t.Errorf("a second c-two: exit %d, %s", code, errs)
	}

	// The support bundle carries the fleet's view; the metrics are
	// labelled by connector.
	var zb bytes.Buffer
	if err := cl.SupportBundle(ctx, &zb); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(zb.Bytes()), int64(zb.Len()))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range zr.File {
		if f.Name == "fleet.json" {
			r, _ := f.Open()
			var fs api.FleetStatus
			found = json.NewDecoder(r).Decode(&fs) == nil && len(fs.Members) == 2
		}
	}
	if !found {
		t.Error("the support bundle has no fleet.json with both members")
	}
	m, err := cl.Metrics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`rehost_build_info{connector="c-one"`, `rehost_fleet_members{connector="c-one",status="HEALTHY"} 2`, `rehost_fleet_member_runs{connector="c-one",member="c-two"}`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Disassociated, the second connector stops.
	if _, err := cl.DisassociateConnector(ctx, &api.DisassociateConnectorInput{ConnectorID: "c-two"}); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-served:
		if code != 1 || !strings.Contains(serveErrs.String(), "removed from the fleet") {
			t.Errorf("removed connector: exit %d, %s", code, serveErrs)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the removed connector kept serving")
	}
	if _, err := cl.DisassociateConnector(ctx, &api.DisassociateConnectorInput{ConnectorID: "c-two"}); !api.IsType(err, api.ErrInvalidParameter) {
		t.Errorf("disassociate twice: %v", err)
	}
}

// store migrate moves a single connector's state into PostgreSQL without
// losing a job, run, ledger entry or key, and the connector then runs on it.
func TestStoreMigrate(t *testing.T) {
	clearServeEnv(t)
	t.Setenv("REHOST_ENDPOINT", "")
	t.Setenv("REHOST_LOGIN_FILE", filepath.Join(t.TempDir(), "none.json"))
	ctx := context.Background()
	dir := t.TempDir()
	d, err := daemon.Open(ctx, dir, daemon.Options{Scheduler: scheduler.Options{Passive: true}})
	if err != nil {
		t.Fatal(err)
	}
	src, err := d.Store.CreateSource(ctx, store.Source{Kind: store.SourceVSphere, Name: "vc", Secret: d.Box.Seal([]byte("pw"))})
	if err != nil {
		t.Fatal(err)
	}
	var runIDs []string
	for i := range 5 {
		srv, _ := d.Store.UpsertServer(ctx, store.Server{SourceID: src.ID, VMID: string(rune('a' + i))})
		j, err := d.Store.CreateJob(ctx, store.ReplicationJob{ServerID: srv.ServerID, SeedReplicationTime: time.Now(), Frequency: 6})
		if err != nil {
			t.Fatal(err)
		}
		r, err := d.Store.CreateRuns(ctx, store.ReplicationRun{ReplicationJobID: j.ReplicationJobID, State: store.RunActive})
		if err != nil {
			t.Fatal(err)
		}
		runIDs = append(runIDs, r[0].ReplicationRunID)
		for k := range 3 {
			if _, err := d.Store.RecordIntent(ctx, r[0].ReplicationRunID, "stage", "multipart-upload", json.RawMessage(`{"disk":`+string(rune('0'+k))+`}`)); err != nil {
				t.Fatal(err)
			}
		}
	}
	key, err := d.CreateAccessKey(ctx, "ops", false)
	if err != nil {
		t.Fatal(err)
	}
	d.Close()

	db := pgtest.NewDB(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte(db.Password+"\n"), 0o600)
	if _, errs, code := walk(t, "store", "migrate", "--state-dir", dir); code != 2 || !strings.Contains(errs, "--to") {
		t.Errorf("without --to: %d %s", code, errs)
	}
	out, errs, code := walk(t, "store", "migrate", "--state-dir", dir, "--to", db.URL, "--store-ca-file", db.CAFile, "--store-password-file", pwFile, "--json")
	if code != 0 {
		t.Fatalf("store migrate: %d %s %s", code, out, errs)
	}
	var res storeMigrateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err)
	}
	if res.Rows["replication_jobs"] != 5 || res.Rows["replication_runs"] != 5 || res.Rows["ledger"] != 15 || res.Rows["sources"] != 1 || res.Rows["settings"] < 1 {
		t.Errorf("rows moved = %v", res.Rows)
	}
	if _, err := os.Stat(filepath.Join(dir, "rehost.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("rehost.db still in place: %v", err)
	}
	if _, err := os.Stat(res.Backup); err != nil {
		t.Errorf("no backup: %v", err)
	}
	// The state directory now opens on PostgreSQL, with everything in it.
	d, err = daemon.OpenExisting(ctx, dir, daemon.Options{Scheduler: scheduler.Options{Passive: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !d.StoreConfig.Postgres() {
		t.Fatal("the state directory is not on PostgreSQL")
	}
	for _, id := range runIDs {
		l, err := d.Store.LedgerForRun(ctx, id)
		if err != nil || len(l) != 3 {
			t.Errorf("ledger of %s: %d entries, %v", id, len(l), err)
		}
	}
	got, err := d.Store.GetSource(ctx, src.ID)
	if err != nil {
		t.Fatal(err)
	}
	if pw, err := d.Box.Open(got.Secret); err != nil || string(pw) != "pw" {
		t.Errorf("source secret = %q, %v", pw, err)
	}
	if k, found, err := d.AccessKey(ctx, key.ID); err != nil || !found || k.Secret != key.Secret {
		t.Errorf("access key after the move: %+v %v, %v", k, found, err)
	}
	if _, errs, code := walk(t, "store", "migrate", "--state-dir", dir, "--to", db.URL); code != 1 || !strings.Contains(errs, "already keeps its state") {
		t.Errorf("second migrate: %d %s", code, errs)
	}
}

// A store unreachable at start: serve says so and tries again, serving
// nothing meanwhile; once the store answers, it starts.
func TestServeWaitsForAnUnreachableStore(t *testing.T) {
	clearServeEnv(t)
	defer func(d time.Duration) { storeRetry = d }(storeRetry)
	storeRetry = 200 * time.Millisecond
	db := pgtest.NewDB(t)
	t.Setenv(daemon.EnvStorePassword, db.Password)
	u, _ := url.Parse(db.URL)
	p, err := proxy.New(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.Cut()
	dir := t.TempDir()
	via := strings.Replace(db.URL, u.Host, p.Addr, 1)
	_, errs := serveAsync(t, "--state-dir", dir, "--listen", "127.0.0.1:0", "--store", via, "--store-ca-file", db.CAFile, "--log-format", "text")
	for deadline := time.Now().Add(20 * time.Second); strings.Count(errs.String(), "retrying in") < 3; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not report the unreachable store: %s", errs)
		}
	}
	if !strings.Contains(errs.String(), p.Addr) || !strings.Contains(errs.String(), "unreachable") {
		t.Errorf("the message does not name the store: %s", errs)
	}
	if strings.Contains(errs.String(), "serving https") {
		t.Fatalf("serve listened before it had its store: %s", errs)
	}
	p.Restore()
	for deadline := time.Now().Add(30 * time.Second); !strings.Contains(errs.String(), "serving https"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start once the store answered: %s", errs)
		}
	}
}
