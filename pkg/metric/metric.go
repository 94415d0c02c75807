// Package metric is a registry of Prometheus metrics served in the text
// exposition format (version 0.0.4, which every Prometheus scrapes):
// counters, gauges and histograms, each with or without labels, and
// families whose values are read at scrape time.
//
// It is the part of github.com/prometheus/client_golang the connector uses.
// That library brings protocol buffers, OpenMetrics and the process
// collectors with it: 3.3 MB of the product binary for what fits here.
package metric

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// Registry holds metric families and writes them out. Its methods are safe
// for concurrent use.
type Registry struct {
	mu   sync.Mutex
	fams []*family
	// constNames and constValues label every series written.
	constNames, constValues []string
}

// NewRegistry returns an empty registry. constLabels, as name and value
// pairs, label every series it writes (a fleet member's connector id).
func NewRegistry(constLabels ...string) *Registry {
	if len(constLabels)%2 != 0 {
		panic("metric: constant labels are name and value pairs")
	}
	r := &Registry{}
	for i := 0; i < len(constLabels); i += 2 {
		r.constNames = append(r.constNames, constLabels[i])
		r.constValues = append(r.constValues, constLabels[i+1])
	}
	return r
}

type family struct {
	name, help, typ string
	labels          []string
	// constNames and constValues are the registry's constant labels.
	constNames, constValues []string
	buckets                 []float64 // histograms: upper bounds, ascending
	// collect, when set, reads the family's samples at scrape time.
	collect func(emit func(v float64, labelValues ...string))

	mu     sync.Mutex
	series map[string]*series
}

type series struct {
	labelValues []string
	value       float64  // counter, gauge; histogram: sum
	counts      []uint64 // histogram: observations per bucket, not cumulative
	count       uint64   // histogram: observations
}

func (r *Registry) add(f *family) *family {
	r.mu.Lock()
	defer r.mu.Unlock()
	if i := slices.IndexFunc(r.fams, func(x *family) bool { return x.name == f.name }); i >= 0 {
		panic(fmt.Sprintf("metric %s registered twice", f.name))
	}
	f.series = map[string]*series{}
	f.constNames, f.constValues = r.constNames, r.constValues
	if len(f.labels) == 0 && f.collect == nil {
		f.get(nil) // a metric without labels is written from the start
	}
	r.fams = append(r.fams, f)
	return f
}

// get returns the series of these label values, made on first use.
func (f *family) get(labelValues []string) *series {
	if len(labelValues) != len(f.labels) {
		panic(fmt.Sprintf("metric %s: %d label values for labels %v", f.name, len(labelValues), f.labels))
	}
	key := strings.Join(labelValues, "\xff")
	s := f.series[key]
	if s == nil {
		s = &series{labelValues: slices.Clone(labelValues)}
		if f.buckets != nil {
			s.counts = make([]uint64, len(f.buckets))
		}
		f.series[key] = s
	}
	return s
}

func (f *family) update(labelValues []string, do func(s *series)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	do(f.get(labelValues))
}

// Counter is a counter family: each series only goes up.
type Counter struct{ f *family }

// Counter registers a counter with the given label names.
func (r *Registry) Counter(name, help string, labels ...string) *Counter {
	return &Counter{r.add(&family{name: name, help: help, typ: "counter", labels: labels})}
}

// Add adds v (ignored unless positive) to the series of the label values.
func (c *Counter) Add(v float64, labelValues ...string) {
	if v > 0 {
		c.f.update(labelValues, func(s *series) { s.value += v })
	}
}

// Inc adds one to the series of the label values.
func (c *Counter) Inc(labelValues ...string) { c.Add(1, labelValues...) }

// Gauge is a gauge family: each series is set to a value.
type Gauge struct{ f *family }

// Gauge registers a gauge with the given label names.
func (r *Registry) Gauge(name, help string, labels ...string) *Gauge {
	return &Gauge{r.add(&family{name: name, help: help, typ: "gauge", labels: labels})}
}

// Set sets the series of the label values to v.
func (g *Gauge) Set(v float64, labelValues ...string) {
	g.f.update(labelValues, func(s *series) { s.value = v })
}

// Histogram is a histogram family: each series counts observations into
// buckets.
type Histogram struct{ f *family }

// Histogram registers a histogram with the given upper bounds (ascending;
// +Inf is implied) and label names.
func (r *Registry) Histogram(name, help string, buckets []float64, labels ...string) *Histogram {
	if !slices.IsSorted(buckets) {
		panic("metric " + name + ": buckets are not ascending")
	}
	return &Histogram{r.add(&family{name: name, help: help, typ: "histogram", labels: labels, buckets: slices.Clone(buckets)})}
}

// Observe counts v into the series of the label values.
func (h *Histogram) Observe(v float64, labelValues ...string) {
	h.f.update(labelValues, func(s *series) {
		if i, _ := slices.BinarySearch(h.f.buckets, v); i < len(s.counts) {
			s.counts[i]++
		}
		s.value += v
		s.count++
	})
}

// GaugeFunc registers a gauge whose samples collect gives at each scrape,
// calling emit once per series.
func (r *Registry) GaugeFunc(name, help string, labels []string, collect func(emit func(v float64, labelValues ...string))) {
	r.add(&family{name: name, help: help, typ: "gauge", labels: labels, collect: collect})
}

// ExponentialBuckets returns n upper bounds from start, each factor times
// the one before.
func ExponentialBuckets(start, factor float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = start
		start *= factor
	}
	return out
}

// WriteTo writes every family in the text exposition format, sorted by
// name, each family's series sorted by their label values. A family with
// labels and no series yet is left out.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	r.mu.Lock()
	fams := slices.Clone(r.fams)
	r.mu.Unlock()
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.name, b.name) })
	cw := &countWriter{w: bufio.NewWriter(w)}
	for _, f := range fams {
		f.write(cw)
	}
	if err := cw.w.Flush(); cw.err == nil {
		cw.err = err
	}
	return cw.n, cw.err
}

func (f *family) write(w *countWriter) {
	var ss []*series
	if f.collect != nil {
		m := map[string]*series{}
		f.collect(func(v float64, labelValues ...string) {
			m[strings.Join(labelValues, "\xff")] = &series{labelValues: slices.Clone(labelValues), value: v}
		})
		for _, s := range m {
			ss = append(ss, s)
		}
	} else {
		f.mu.Lock()
		for _, s := range f.series {
			c := *s
			c.counts = slices.Clone(s.counts)
			ss = append(ss, &c)
		}
		f.mu.Unlock()
	}
	if len(ss) == 0 {
		return
	}
	slices.SortFunc(ss, func(a, b *series) int { return slices.Compare(a.labelValues, b.labelValues) })
	w.printf("# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.typ)
	names := slices.Concat(f.constNames, f.labels)
	for _, s := range ss {
		s.labelValues = slices.Concat(f.constValues, s.labelValues)
		if f.typ != "histogram" {
			w.printf("%s%s %s\n", f.name, labelSet(names, s.labelValues, ""), number(s.value))
			continue
		}
		var cum uint64
		for i, b := range f.buckets {
			cum += s.counts[i]
			w.printf("%s_bucket%s %d\n", f.name, labelSet(names, s.labelValues, number(b)), cum)
		}
		w.printf("%s_bucket%s %d\n", f.name, labelSet(names, s.labelValues, "+Inf"), s.count)
		w.printf("%s_sum%s %s\n", f.name, labelSet(names, s.labelValues, ""), number(s.value))
		w.printf("%s_count%s %d\n", f.name, labelSet(names, s.labelValues, ""), s.count)
	}
}

// labelSet is {a="x",b="y"}, with le last for a histogram's bucket; "" when
// there is no label.
func labelSet(names, values []string, le string) string {
	if len(names) == 0 && le == "" {
		return ""
	}
	var b strings.Builder
	b.WriteByte('{')
	for i, n := range names {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(n + `="` + escapeLabel(values[i]) + `"`)
	}
	if le != "" {
		if len(names) > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`le="` + le + `"`)
	}
	b.WriteByte('}')
	return b.String()
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeLabel(s string) string { return labelEscaper.Replace(s) }
func escapeHelp(s string) string  { return helpEscaper.Replace(s) }

func number(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

type countWriter struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (c *countWriter) printf(format string, args ...any) {
	if c.err != nil {
		return
	}
	n, err := fmt.Fprintf(c.w, format, args...)
	c.n += int64(n)
	c.err = err
}

// ContentType is the media type of the text exposition format.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// ServeHTTP serves the registry to a scraper.
func (r *Registry) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", ContentType)
	r.WriteTo(w)
}
