package bandwidth

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rehost/rehost/internal/lab/fakeclock"
)

func TestParseRate(t *testing.T) {
	for in, want := range map[string]Rate{
		"50Mbit":       6_250_000,
		"50 Mbit/s":    6_250_000,
		"50mbit":       6_250_000,
		"50Mbps":       6_250_000,
		"50 Mbits/s":   6_250_000,
		"1Gbit":        125_000_000,
		"1.5 Gbit/s":   187_500_000,
		"10MB/s":       10_000_000,
		"10MBps":       10_000_000,
		"10MiB/s":      10 << 20,
		"800kbps":      100_000,
		"64kbit":       8_000,
		"unlimited":    0,
		"Unlimited":    0,
		" 2.5 GB/s ":   2_500_000_000,
		"83.88608Mbit": 10_485_760,
	} {
		got, err := ParseRate(in)
		if err != nil || got != want {
			t.Errorf("ParseRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for in, mention := range map[string]string{
		"":            "no rate",
		"50":          "has no unit",
		"50Mb":        "ambiguous",
		"50 furlongs": "unknown unit",
		"-5Mbit":      "not positive",
		"0Mbit":       "not positive",
		"Mbit":        "does not start with a number",
		"1..2Mbit":    "not a number",
		"10kbit":      "below the smallest cap",
		"9Tbit":       "above the largest cap",
		"50mb/s":      "ambiguous",
	} {
		_, err := ParseRate(in)
		if err == nil || !strings.Contains(err.Error(), mention) {
			t.Errorf("ParseRate(%q) = %v; want an error mentioning %q", in, err, mention)
		}
	}
}

func TestRateStringReadsBack(t *testing.T) {
	for _, r := range []Rate{MinRate, 6_250_000, 125_000_000, 187_500_000, 10 << 20, 123_456_789, MaxRate} {
		s := r.String()
		back, err := ParseRate(s)
		if err != nil || back != r {
			t.Errorf("%d → %q → %d, %v", r, s, back, err)
		}
	}
	if s := Rate(2_500_000).String(); s != "20 Mbit/s" {
		t.Errorf("20 Mbit/s written %q", s)
	}
	if s := Rate(0).String(); s != Unlimited {
		t.Errorf("no cap written %q", s)
	}
}

func TestCompileCanonical(t *testing.T) {
	s, err := Compile(Spec{Default: "1gbit", Zone: "Europe/Paris", Windows: []WindowSpec{
		{Days: "monday-fri", Start: "8:00", End: "18:00", Rate: "20Mbps"},
		{Days: "sun,Sat", Start: "00:00", End: "24:00", Rate: "unlimited"},
		{Days: "Mon,Wed,Thu", Start: "22:00", End: "06:00", Rate: "10MB/s"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{Default: "1 Gbit/s", Zone: "Europe/Paris", Windows: []WindowSpec{
		{Days: "Mon-Fri", Start: "08:00", End: "18:00", Rate: "20 Mbit/s"},
		{Days: "Sat-Sun", Start: "00:00", End: "24:00", Rate: "unlimited"},
		{Days: "Mon,Wed-Thu", Start: "22:00", End: "06:00", Rate: "80 Mbit/s"},
	}}
	got := s.Spec()
	if got.Default != want.Default || got.Zone != want.Zone || len(got.Windows) != len(want.Windows) {
		t.Fatalf("canonical = %+v, want %+v", got, want)
	}
	for i := range want.Windows {
		if got.Windows[i] != want.Windows[i] {
			t.Errorf("window %d = %+v, want %+v", i+1, got.Windows[i], want.Windows[i])
		}
	}
	// The canonical form compiles to the same.
	again, err := Compile(got)
	if err != nil || again.Spec().Windows[2] != got.Windows[2] {
		t.Errorf("recompiled: %v %+v", err, again)
	}
	w, err := ParseWindow("Mon-Fri 08:00-18:00 20 Mbit")
	if err != nil || w != (WindowSpec{Days: "Mon-Fri", Start: "08:00", End: "18:00", Rate: "20Mbit"}) {
		t.Errorf("ParseWindow = %+v, %v", w, err)
	}
	if _, err := ParseWindow("Mon-Fri 20Mbit"); err == nil || !strings.Contains(err.Error(), "HH:MM-HH:MM") {
		t.Errorf("ParseWindow without times: %v", err)
	}
}

func TestCompileRefusesBadInput(t *testing.T) {
	win := func(days, from, to, rate string) WindowSpec {
		return WindowSpec{Days: days, Start: from, End: to, Rate: rate}
	}
	for _, c := range []struct {
		name    string
		spec    Spec
		mention []string
	}{
		{"unknown unit", Spec{Default: "5 parsecs"}, []string{"default rate", "unknown unit"}},
		{"negative", Spec{Windows: []WindowSpec{win("Mon", "08:00", "09:00", "-1Mbit")}}, []string{"window 1", "not positive"}},
		{"bad zone", Spec{Zone: "Mars/Olympus"}, []string{`time zone "Mars/Olympus"`, "IANA"}},
		{"bad day", Spec{Windows: []WindowSpec{win("Mon-Fry", "08:00", "09:00", "1Mbit")}}, []string{"window 1", `"Mon-Fry"`}},
		{"no days", Spec{Windows: []WindowSpec{win("", "08:00", "09:00", "1Mbit")}}, []string{"no days"}},
		{"bad time", Spec{Windows: []WindowSpec{win("Mon", "8h", "09:00", "1Mbit")}}, []string{"start", `"8h"`}},
		{"24:00 start", Spec{Windows: []WindowSpec{win("Mon", "24:00", "09:00", "1Mbit")}}, []string{"start", "23:59"}},
		{"empty window", Spec{Windows: []WindowSpec{win("Mon", "09:00", "09:00", "1Mbit")}}, []string{"starts and ends at 09:00"}},
		{"overlap", Spec{Windows: []WindowSpec{win("Mon-Fri", "08:00", "18:00", "20Mbit"), win("Wed", "17:00", "20:00", "1Gbit")}},
			[]string{"windows 1", "and 2", "overlap at Wed 17:00"}},
		{"overlap past midnight", Spec{Windows: []WindowSpec{win("Sun", "22:00", "02:00", "20Mbit"), win("Mon", "01:00", "03:00", "1Gbit")}},
			[]string{"overlap at Mon 01:00"}},
		{"overlap past the week's end", Spec{Windows: []WindowSpec{win("Sat", "23:00", "01:00", "20Mbit"), win("Sun", "00:30", "03:00", "1Gbit")}},
			[]string{"overlap at Sun 00:30"}},
	} {
		_, err := Compile(c.spec)
		if err == nil || !IsInvalid(err) {
			t.Errorf("%s: Compile = %v, want an invalid-cap error", c.name, err)
			continue
		}
		for _, m := range c.mention {
			if !strings.Contains(err.Error(), m) {
				t.Errorf("%s: %q does not mention %q", c.name, err, m)
			}
		}
	}
	// Touching windows do not overlap.
	if _, err := Compile(Spec{Windows: []WindowSpec{win("Mon-Fri", "08:00", "18:00", "20Mbit"), win("Mon-Fri", "18:00", "08:00", "1Gbit")}}); err != nil {
		t.Errorf("adjacent windows: %v", err)
	}
}

func paris(t *testing.T) *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// businessHours is the example: Mon–Fri 08:00–18:00 at 20 Mbit/s,
// nights at 1 Gbit/s, weekends without a cap.
func businessHours(t *testing.T) *Schedule {
	s, err := Compile(Spec{Default: "unlimited", Zone: "Europe/Paris", Windows: []WindowSpec{
		{Days: "Mon-Fri", Start: "08:00", End: "18:00", Rate: "20Mbit"},
		{Days: "Mon-Fri", Start: "18:00", End: "08:00", Rate: "1Gbit"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestInForceSwitchesAtWindowEdges(t *testing.T) {
	s := businessHours(t)
	loc := paris(t)
	at := func(y int, m time.Month, d, hh, mm int) time.Time { return time.Date(y, m, d, hh, mm, 0, 0, loc) }
	for _, c := range []struct {
		t      time.Time
		rate   Rate
		window int
		until  time.Time
	}{
		{at(2026, 12, 7, 9, 30), 2_500_000, 0, at(2026, 12, 7, 18, 0)},    // Monday morning
		{at(2026, 12, 7, 17, 59), 2_500_000, 0, at(2026, 12, 7, 18, 0)},   // a minute before the edge
		{at(2026, 12, 7, 18, 0), 125_000_000, 1, at(2026, 12, 8, 8, 0)},   // at the edge
		{at(2026, 12, 11, 23, 0), 125_000_000, 1, at(2026, 12, 12, 8, 0)}, // Friday night runs into Saturday
		{at(2026, 12, 12, 9, 0), 0, -1, at(2026, 12, 14, 8, 0)},           // Saturday: no window until Monday 08:00 (the Sunday-night window is Mon-Fri's)
		{at(2026, 12, 12, 8, 0), 0, -1, at(2026, 12, 14, 8, 0)},           // Friday's night ended at Saturday 08:00
		{at(2026, 3, 29, 1, 30), 0, -1, at(2026, 3, 30, 8, 0)},            // Sunday of the spring DST change
		{at(2026, 3, 30, 7, 59), 0, -1, at(2026, 3, 30, 8, 0)},            // Monday after it: Sunday has no night window
	} {
		rate, w, until := s.InForce(c.t)
		if rate != c.rate || w != c.window || !until.Equal(c.until) {
			t.Errorf("at %s: %s (window %d) until %s; want %s (window %d) until %s",
				c.t.Format("Mon 2006-01-02 15:04 MST"), rate, w, until.In(loc).Format("Mon 15:04"), c.rate, c.window, c.until.In(loc).Format("Mon 15:04"))
		}
	}
	// The same instant in another zone is the same rate.
	if r, _, _ := s.InForce(at(2026, 12, 7, 9, 30).UTC()); r != 2_500_000 {
		t.Errorf("UTC instant: %s", r)
	}
}

// simulate drives c as WaitN's first waiter does, callers taking turns in
// order (S3 parts ask 64 KiB, EBS blocks 512 KiB), with the fake clock
// moved by each wait, until end; it returns the bytes granted per
// simulated minute.
func simulate(c *Cap, clk *fakeclock.Clock, sizes []int, end time.Time) map[time.Time]int64 {
	perMinute := map[time.Time]int64{}
	for i := 0; clk.Now().Before(end); i++ {
		n := sizes[i%len(sizes)]
		for {
			wait, _ := c.take(n)
			if wait <= 0 {
				break
			}
			clk.Advance(wait)
		}
		perMinute[clk.Now().Truncate(time.Minute)] += int64(n)
	}
	return perMinute
}

const s3Part, ebsBlock = 64 << 10, 512 << 10

func within(got, want, tolerance float64) bool { return math.Abs(got-want) <= tolerance*want }

func TestCapHonoursTheRateWithin5PercentPerMinute(t *testing.T) {
	for _, rate := range []string{"64kbit", "1Mbit", "20Mbit", "1Gbit"} {
		t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
		clk := fakeclock.New(t0)
		c := New(clk)
		s, err := Compile(Spec{Default: rate})
		if err != nil {
			t.Fatal(err)
		}
		c.Set(s)
		// Eight runs in flight: five staging to S3, three writing EBS blocks.
		sizes := []int{s3Part, ebsBlock, s3Part, s3Part, ebsBlock, s3Part, ebsBlock, s3Part}
		minutes := 5
		if rate == "64kbit" {
			minutes = 60 // a 512 KiB block is over a minute of it: judge over 30-minute spans
		}
		perMinute := simulate(c, clk, sizes, t0.Add(time.Duration(minutes)*time.Minute))
		want := float64(s.def) * 60
		span := 1
		if rate == "64kbit" {
			span = 30
		}
		for m := 0; m+span <= minutes; m += span {
			var got int64
			for k := range span {
				got += perMinute[t0.Add(time.Duration(m+k)*time.Minute)]
			}
			if !within(float64(got), want*float64(span), 0.05) {
				t.Errorf("%s: minute %d: %d bytes granted, want %.0f ±5 %%", rate, m, got, want*float64(span))
			}
			t.Logf("%s: minutes %d–%d: %d bytes, %.2f %% of the cap", rate, m, m+span, got, 100*float64(got)/(want*float64(span)))
		}
	}
}

func TestCapSwitchesRateAtTheWindowEdge(t *testing.T) {
	loc := paris(t)
	t0 := time.Date(2026, 12, 7, 17, 55, 0, 0, loc) // Monday, five minutes before business hours end
	clk := fakeclock.New(t0)
	c := New(clk)
	s, err := Compile(Spec{Default: "unlimited", Zone: "Europe/Paris", Windows: []WindowSpec{
		{Days: "Mon-Fri", Start: "08:00", End: "18:00", Rate: "20Mbit"},
		{Days: "Mon-Fri", Start: "18:00", End: "08:00", Rate: "100Mbit"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	c.Set(s)
	perMinute := simulate(c, clk, []int{s3Part, ebsBlock, s3Part}, t0.Add(10*time.Minute))
	for m := range 10 {
		at := t0.Add(time.Duration(m) * time.Minute)
		want := 2_500_000.0 * 60
		if !at.Before(time.Date(2026, 12, 7, 18, 0, 0, 0, loc)) {
			want = 12_500_000.0 * 60
		}
		if got := float64(perMinute[at]); !within(got, want, 0.05) {
			t.Errorf("minute from %s: %.0f bytes, want %.0f ±5 %%", at.Format("15:04"), got, want)
		}
	}
}

func TestWaitNBlocksUntilTheClockOrANewCapAllowsIt(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	c := New(clk)
	ctx := context.Background()
	// No cap: granted at once, counted.
	if err := c.WaitN(ctx, ebsBlock); err != nil {
		t.Fatal(err)
	}
	s, err := Compile(Spec{Default: "1Mbit"}) // 125,000 B/s
	if err != nil {
		t.Fatal(err)
	}
	c.Set(s)
	// The first request finds the bucket full; the second waits for the
	// debt: 512 KiB − 12,500 B of burst at 125,000 B/s ≈ 4.1 s.
	if err := c.WaitN(ctx, ebsBlock); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.WaitN(ctx, s3Part) }()
	waitFor(t, func() bool { return clk.Pending() == 1 })
	clk.Advance(2 * time.Second)
	select {
	case err := <-done:
		t.Fatalf("granted after 2 s of a 4 s debt: %v", err)
	default:
	}
	waitFor(t, func() bool { return clk.Pending() == 1 })
	clk.Advance(2200 * time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A waiter is released by a cap lifted meanwhile, without the clock.
	clk.Advance(time.Second)                       // the debt repaid
	if err := c.WaitN(ctx, ebsBlock); err != nil { // into debt again
		t.Fatal(err)
	}
	go func() { done <- c.WaitN(ctx, ebsBlock) }()
	waitFor(t, func() bool { return clk.Pending() >= 1 })
	c.Set(nil)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// Cancellation ends a wait with the context's cause.
	c.Set(s)
	c.WaitN(ctx, ebsBlock)
	cctx, cancel := context.WithCancelCause(ctx)
	go func() { done <- c.WaitN(cctx, ebsBlock) }()
	waitFor(t, func() bool { return clk.Pending() >= 1 })
	stop := errors.New("run cancelled")
	cancel(stop)
	if err := <-done; !errors.Is(err, stop) {
		t.Fatalf("cancelled wait = %v", err)
	}
	st := c.Status()
	if st.Total != 5*ebsBlock+s3Part {
		t.Errorf("total granted = %d, want %d", st.Total, 5*ebsBlock+s3Part)
	}
	if st.Rate != 125_000 || st.Spec.Default != "1 Mbit/s" || st.Window != -1 {
		t.Errorf("status = %+v", st)
	}
}

func TestThroughputIsTheLastSecondsAverage(t *testing.T) {
	clk := fakeclock.New(time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC))
	c := New(clk)
	for range 10 {
		for range 16 {
			c.WaitN(context.Background(), s3Part) // 1 MiB a second
		}
		clk.Advance(time.Second)
	}
	if got := c.Status().Throughput; got != 1<<20 {
		t.Errorf("throughput = %.0f B/s, want %d", got, 1<<20)
	}
	clk.Advance(3 * time.Second) // idle: it falls
	if got := c.Status().Throughput; got != 2*(1<<20)/5.0 {
		t.Errorf("throughput after 3 idle seconds = %.0f B/s, want %.0f", got, 2*(1<<20)/5.0)
	}
	clk.Advance(time.Minute)
	if got := c.Status().Throughput; got != 0 {
		t.Errorf("throughput after a minute idle = %.0f", got)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 5000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition not reached")
}

// BenchmarkCapRealClock runs eight callers (S3 parts and EBS blocks) under
// a 400 Mbit/s cap on the real clock and reports what passed as a share
// of the cap (cap-%), and the cost of one request.
func BenchmarkCapRealClock(b *testing.B) {
	c := New(nil)
	s, err := Compile(Spec{Default: "400Mbit"})
	if err != nil {
		b.Fatal(err)
	}
	c.Set(s)
	c.WaitN(context.Background(), 1) // start the bucket
	b.SetParallelism(4)
	start := time.Now()
	before := c.Status().Total
	var flip sync.Mutex
	i := 0
	b.RunParallel(func(pb *testing.PB) {
		flip.Lock()
		n := s3Part
		if i%2 == 1 {
			n = ebsBlock
		}
		i++
		flip.Unlock()
		for pb.Next() {
			c.WaitN(context.Background(), n)
		}
	})
	elapsed := time.Since(start).Seconds()
	got := float64(c.Status().Total-before) / elapsed
	b.ReportMetric(100*got/float64(s.def), "cap-%")
	b.ReportMetric(got/1e6, "MB/s")
}
