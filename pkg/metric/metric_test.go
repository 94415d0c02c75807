package metric

import (
	"bytes"
	"math"
	"net/http/httptest"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// What the registry writes is what Prometheus's own parser reads back:
// every kind of family, label values that need escaping, histogram buckets
// cumulative with +Inf, a family read at scrape time.
func TestExpositionParsesAsPrometheusReadsIt(t *testing.T) {
	r := NewRegistry()
	plain := r.Counter("t_bytes_total", "Bytes sent.")
	byState := r.Counter("t_runs_total", "Runs by state.", "state")
	r.Counter("t_unused_total", "A family with labels and no series yet.", "x")
	last := r.Gauge("t_last_seconds", "When.\nTwo lines, a \\ too.", "job")
	h := r.Histogram("t_duration_seconds", "How long.", ExponentialBuckets(10, 2.5, 3), "step")
	r.GaugeFunc("t_slots", "Slots in use.", []string{"region"}, func(emit func(float64, ...string)) {
		emit(2, "eu-west-1")
		emit(0, "us-east-1")
	})

	plain.Add(1 << 20)
	plain.Add(-5) // counters only go up
	byState.Inc("COMPLETED")
	byState.Inc("COMPLETED")
	byState.Inc(`FAILED "x"\n`)
	last.Set(1.7e9, "sms-job-1")
	for _, v := range []float64{1, 10, 11, 30, 1000} {
		h.Observe(v, "stage")
	}

	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if ct := rec.Header().Get("Content-Type"); ct != ContentType {
		t.Errorf("content type %q", ct)
	}
	text := rec.Body.String()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		t.Fatalf("does not parse: %v\n%s", err, text)
	}
	if _, ok := fams["t_unused_total"]; ok {
		t.Error("a family without series is written")
	}
	get := func(name string, labels ...string) *dto.Metric {
		t.Helper()
		f := fams[name]
		if f == nil {
			t.Fatalf("no family %s in\n%s", name, text)
		}
	next:
		for _, m := range f.Metric {
			for i, l := range m.Label {
				if i < len(labels) && l.GetValue() != labels[i] {
					continue next
				}
			}
			return m
		}
		t.Fatalf("no %s%v in\n%s", name, labels, text)
		return nil
	}
	if v := get("t_bytes_total").GetCounter().GetValue(); v != 1<<20 {
		t.Errorf("plain counter %v", v)
	}
	if v := get("t_runs_total", "COMPLETED").GetCounter().GetValue(); v != 2 {
		t.Errorf("counter by state %v", v)
	}
	if v := get("t_runs_total", `FAILED "x"\n`).GetCounter().GetValue(); v != 1 {
		t.Errorf("escaped label value %v", v)
	}
	if f := fams["t_last_seconds"]; f.GetHelp() != "When.\nTwo lines, a \\ too." || f.GetType() != dto.MetricType_GAUGE {
		t.Errorf("gauge help %q type %v", f.GetHelp(), f.GetType())
	}
	if v := get("t_last_seconds", "sms-job-1").GetGauge().GetValue(); v != 1.7e9 {
		t.Errorf("gauge %v", v)
	}
	hist := get("t_duration_seconds", "stage").GetHistogram()
	if hist.GetSampleCount() != 5 || hist.GetSampleSum() != 1052 {
		t.Errorf("histogram count %d sum %v", hist.GetSampleCount(), hist.GetSampleSum())
	}
	want := map[float64]uint64{10: 2, 25: 3, 62.5: 4, math.Inf(1): 5}
	for _, b := range hist.Bucket {
		if w, ok := want[b.GetUpperBound()]; !ok || w != b.GetCumulativeCount() {
			t.Errorf("bucket le=%v: %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), w)
		}
	}
	if v := get("t_slots", "eu-west-1").GetGauge().GetValue(); v != 2 {
		t.Errorf("gauge read at scrape time %v", v)
	}

	var again bytes.Buffer
	if _, err := r.WriteTo(&again); err != nil || again.String() != text {
		t.Errorf("a second write differs (%v):\n%s", err, again.String())
	}
}

// A registry's constant labels (a fleet member's connector id) come first
// on every series of every kind, histogram buckets included, and parse.
func TestConstantLabels(t *testing.T) {
	r := NewRegistry("connector", "c-1")
	r.Counter("t_total", "Plain.").Inc()
	r.Counter("t_by_state_total", "By state.", "state").Inc("COMPLETED")
	r.Histogram("t_seconds", "How long.", []float64{1}, "step").Observe(2, "stage")
	r.GaugeFunc("t_leader", "Leader.", nil, func(emit func(float64, ...string)) { emit(1) })
	var b bytes.Buffer
	if _, err := r.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`t_total{connector="c-1"} 1`,
		`t_by_state_total{connector="c-1",state="COMPLETED"} 1`,
		`t_seconds_bucket{connector="c-1",step="stage",le="1"} 0`,
		`t_seconds_bucket{connector="c-1",step="stage",le="+Inf"} 1`,
		`t_seconds_count{connector="c-1",step="stage"} 1`,
		`t_leader{connector="c-1"} 1`,
	} {
		if !strings.Contains(b.String(), want+"\n") {
			t.Errorf("missing %q in:\n%s", want, b.String())
		}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	if _, err := p.TextToMetricFamilies(bytes.NewReader(b.Bytes())); err != nil {
		t.Errorf("the exposition does not parse: %v", err)
	}
}
