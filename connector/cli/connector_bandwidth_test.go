package cli

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/api/apitest"
)

// The cap set, shown and cleared with the CLI over the API: stored in
// canonical form, in force in the serving daemon's one cap at once, bad
// input refused with what to write.
func TestConnectorBandwidthOverTheAPI(t *testing.T) {
	c := apitest.Start(t, apitest.Options{})
	apiEnv(t, c)
	fp := "--fingerprint=" + c.Fingerprint

	out, errs, code := walk(t, "connector", "bandwidth", "set", fp, "--rate", "1Gbit", "--zone", "Europe/Paris",
		"--window", "Mon-Fri 08:00-18:00 20Mbit", "--window", "Sat,Sun 00:00-24:00 10MB/s", "--json")
	if code != 0 {
		t.Fatalf("bandwidth set: %d %s %s", code, out, errs)
	}
	var b api.BandwidthCap
	if err := json.Unmarshal([]byte(out), &b); err != nil {
		t.Fatal(err)
	}
	if b.Default != "1 Gbit/s" || b.Zone != "Europe/Paris" || len(b.Windows) != 2 ||
		b.Windows[0].Rate != "20 Mbit/s" || b.Windows[1].Days != "Sat-Sun" || b.Windows[1].Rate != "80 Mbit/s" {
		t.Errorf("stored cap = %+v", b)
	}
	if b.ThroughputBytesPerSecond == nil || b.RateBytesPerSecond == 0 || b.Until.IsZero() {
		t.Errorf("the serving daemon's answer lacks the rate in force or the throughput: %+v", b)
	}
	// The daemon's cap — the engine's limiter on both paths — is the new one.
	deadline := time.Now().Add(10 * time.Second)
	for c.D.Bandwidth.Schedule() == nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := c.D.Bandwidth.Schedule(); s == nil || s.Spec().Default != "1 Gbit/s" {
		t.Fatalf("the daemon's cap = %+v", s)
	}
	if c.D.Engine.Limiter != c.D.Bandwidth || c.D.Engine.Bandwidth != c.D.Bandwidth {
		t.Error("the engine does not wait on the daemon's cap on both paths")
	}

	out, errs, code = walk(t, "connector", "bandwidth", "show", fp)
	if code != 0 || !strings.Contains(out, "default:    1 Gbit/s") || !strings.Contains(out, "1. Mon-Fri 08:00-18:00 at 20 Mbit/s") ||
		!strings.Contains(out, "in force:") || !strings.Contains(out, "throughput:") {
		t.Errorf("bandwidth show: %d\n%s%s", code, out, errs)
	}
	t.Logf("bandwidth show:\n%s", out)

	for _, bad := range []struct {
		args    []string
		mention string
	}{
		{[]string{"--rate", "50Mb"}, "ambiguous"},
		{[]string{"--rate", "-3Mbit"}, "not positive"},
		{[]string{"--zone", "Nowhere/Atlantis", "--window", "Mon 08:00-09:00 1Mbit"}, "IANA"},
		{[]string{"--window", "Mon-Fri 08:00-18:00 20Mbit", "--window", "Wed 12:00-13:00 1Gbit"}, "overlap at Wed 12:00"},
	} {
		args := append([]string{"connector", "bandwidth", "set", fp}, bad.args...)
		_, errs, code := walk(t, args...)
		if code != 1 || !strings.Contains(errs, bad.mention) {
			t.Errorf("set %v: exit %d, %s; want an error mentioning %q", bad.args, code, errs, bad.mention)
		}
	}
	if _, errs, code := walk(t, "connector", "bandwidth", "set", fp, "--window", "Mon 20Mbit"); code != 2 || !strings.Contains(errs, "HH:MM-HH:MM") {
		t.Errorf("a window without times: exit %d, %s", code, errs)
	}
	// A refused cap left the stored one as it was.
	if s := c.D.Bandwidth.Schedule(); s == nil || len(s.Spec().Windows) != 2 {
		t.Errorf("after refused sets the cap is %+v", s)
	}

	out, errs, code = walk(t, "connector", "bandwidth", "clear", fp, "--json")
	if code != 0 || !strings.Contains(out, `"rate": "unlimited"`) {
		t.Fatalf("bandwidth clear: %d %s %s", code, out, errs)
	}
	deadline = time.Now().Add(10 * time.Second)
	for c.D.Bandwidth.Schedule() != nil && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if s := c.D.Bandwidth.Schedule(); s != nil {
		t.Errorf("after clear the daemon's cap is %+v", s.Spec())
	}
}
