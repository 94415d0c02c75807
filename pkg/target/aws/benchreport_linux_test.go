//go:build linux

package aws

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// benchReport is docs/bench/staging.json.
type benchReport struct {
	Date        string         `json:"date"`
	Machine     string         `json:"machine"`
	Reps        int            `json:"repetitions"`
	PartSize    int            `json:"partSize"`
	Concurrency int            `json:"concurrency"`
	Endpoints   []string       `json:"endpoints"`
	Workloads   []workload     `json:"workloads"`
	LoadStart   [3]float64     `json:"loadAverageAtStart"`
	LoadEnd     [3]float64     `json:"loadAverageAtEnd"`
	Rows        []benchRow     `json:"rows"`
	Goals       []benchGoal    `json:"goals"`
	Profiles    []benchProfile `json:"profiles"`
	Runs        []benchRun     `json:"runs"`
}

// benchRow is the median of one (endpoint, workload, source, tool) over the
// repetitions; the ratios are to the best peer (not rehost) of its group.
type benchRow struct {
	Endpoint  string    `json:"endpoint"`
	Workload  string    `json:"workload"`
	Source    string    `json:"source"`
	Tool      string    `json:"tool"`
	MiBps     float64   `json:"mibPerSecond"`
	CPUPerGiB float64   `json:"cpuSecondsPerGiB"`
	MaxRSSMiB float64   `json:"peakRSSMiB"`
	WireMiB   float64   `json:"wireMiB"` // -1: not counted (versitygw)
	ObjectMiB float64   `json:"objectMiB"`
	EachMiBps []float64 `json:"mibPerSecondOfEachRun"`
	XMiBps    float64   `json:"mibPerSecondToBestPeer"`
	XCPU      float64   `json:"cpuToBestPeer"`
}

type benchGoal struct {
	Goal     string `json:"goal"`
	Measured string `json:"measured"`
	Met      bool   `json:"met"`
}

type benchProfile struct {
	Title string `json:"title"`
	Top   string `json:"pprofTop"`
}

func mibps(r benchRun) float64     { return float64(r.Input) / (1 << 20) / r.Seconds }
func cpuPerGiB(r benchRun) float64 { return r.CPU / (float64(r.Input) / (1 << 30)) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func aggregate(runs []benchRun) []benchRow {
	type key struct{ ep, w, src, tool string }
	var order []key
	groups := map[key][]benchRun{}
	for _, r := range runs {
		k := key{r.Endpoint, r.Workload, r.Source, r.Tool}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], r)
	}
	// Rows in the loop's order, grouped by endpoint, workload and source.
	slices.SortStableFunc(order, func(a, b key) int {
		return strings.Compare(a.ep+"\x00"+a.w+"\x00"+a.src, b.ep+"\x00"+b.w+"\x00"+b.src)
	})
	var rows []benchRow
	for _, k := range order {
		g := groups[k]
		row := benchRow{Endpoint: k.ep, Workload: k.w, Source: k.src, Tool: k.tool, WireMiB: -1}
		var cpu, wire, obj []float64
		for _, r := range g {
			row.EachMiBps = append(row.EachMiBps, mibps(r))
			cpu = append(cpu, cpuPerGiB(r))
			obj = append(obj, float64(r.Object)/(1<<20))
			if r.Wire >= 0 {
				wire = append(wire, float64(r.Wire)/(1<<20))
			}
			row.MaxRSSMiB = max(row.MaxRSSMiB, float64(r.MaxRSS)/(1<<20))
		}
		row.MiBps, row.CPUPerGiB, row.ObjectMiB = median(row.EachMiBps), median(cpu), median(obj)
		if len(wire) > 0 {
			row.WireMiB = median(wire)
		}
		rows = append(rows, row)
	}
	for i := range rows {
		bestRate, bestCPU := 0.0, 0.0
		for _, p := range rows {
			if p.Endpoint != rows[i].Endpoint || p.Workload != rows[i].Workload || p.Source != rows[i].Source || strings.HasPrefix(p.Tool, "rehost") {
				continue
			}
			bestRate = max(bestRate, p.MiBps)
			if bestCPU == 0 || p.CPUPerGiB < bestCPU {
				bestCPU = p.CPUPerGiB
			}
		}
		if bestRate > 0 {
			rows[i].XMiBps = rows[i].MiBps / bestRate
		}
		if bestCPU > 0 {
			rows[i].XCPU = rows[i].CPUPerGiB / bestCPU
		}
	}
	return rows
}

func (res *benchReport) row(ep, w, src, tool string) (benchRow, bool) {
	i := slices.IndexFunc(res.Rows, func(r benchRow) bool {
		return r.Endpoint == ep && r.Workload == w && r.Source == src && r.Tool == tool
	})
	if i < 0 {
		return benchRow{}, false
	}
	return res.Rows[i], true
}

// goals checks issue 23's goals on the discard endpoint, for every source
// measured; a goal whose rows were not measured is left out.
func goals(rows []benchRow, work []workload) []benchGoal {
	res := &benchReport{Rows: rows}
	var out []benchGoal
	add := func(goal string, met bool, format string, args ...any) {
		out = append(out, benchGoal{Goal: goal, Measured: fmt.Sprintf(format, args...), Met: met})
	}
	wl := map[string]workload{}
	for _, w := range work {
		wl[w.Name] = w
	}
	for _, src := range []string{"file", "pipe"} {
		raw, okRaw := res.row("discard", "random", src, "rehost")
		if okRaw {
			add("random, raw, from a "+src+": ≤ 0.8 CPU s/GiB", raw.CPUPerGiB <= 0.8, "%.2f CPU s/GiB", raw.CPUPerGiB)
			if sdkm, ok := res.row("discard", "random", src, "sdk-manager"); ok {
				add("random, raw, from a "+src+": ≥ the SDK manager's MiB/s", raw.MiBps >= sdkm.MiBps,
					"%.0f vs %.0f MiB/s (%.2f×)", raw.MiBps, sdkm.MiBps, raw.MiBps/sdkm.MiBps)
			}
		}
		if vm, ok := res.row("discard", "random", src, "rehost-vmdk"); ok && okRaw {
			add("random, VMDK within 20 % of raw, from a "+src, vm.CPUPerGiB <= 1.2*raw.CPUPerGiB && vm.MiBps >= 0.8*raw.MiBps,
				"%.2f vs %.2f CPU s/GiB (%+.0f %%), %.0f vs %.0f MiB/s (%+.0f %%)", vm.CPUPerGiB, raw.CPUPerGiB,
				100*(vm.CPUPerGiB/raw.CPUPerGiB-1), vm.MiBps, raw.MiBps, 100*(vm.MiBps/raw.MiBps-1))
		}
		if fs, ok := res.row("discard", "fs", src, "rehost-vmdk"); ok {
			add("real file-system data through VMDK, from a "+src+": ≤ 3 CPU s/GiB", fs.CPUPerGiB <= 3,
				"%.2f CPU s/GiB, %.0f MiB/s, %.0f of %.0f MiB on the wire", fs.CPUPerGiB, fs.MiBps, fs.WireMiB, float64(wl["fs"].Size)/(1<<20))
		}
		sp, okSp := res.row("discard", "sparse", src, "rehost-vmdk")
		vm, okVm := res.row("discard", "random", src, "rehost-vmdk")
		if w := wl["sparse"]; okSp && okVm {
			gib := float64(w.Size) / (1 << 30)
			holes := float64(w.Size-w.Allocated) / (1 << 30)
			total := sp.CPUPerGiB * gib
			data := vm.CPUPerGiB * float64(w.Allocated) / (1 << 30)
			perHole := max(0, total-data) / holes
			allocMiB := float64(w.Allocated) / (1 << 20)
			extra := sp.WireMiB - allocMiB
			add("holes, from a "+src+": ≤ 0.1 CPU s per GiB of holes and 0 bytes of them on the wire",
				perHole <= 0.1 && extra <= allocMiB/100+4,
				"%.3f CPU s per GiB of holes (%.2f CPU s in all, %.2f of them the %.0f MiB of data at the random-VMDK rate); %.1f MiB on the wire for %.0f MiB of data",
				perHole, total, data, allocMiB, sp.WireMiB, allocMiB)
		}
	}
	peak, where := 0.0, ""
	for _, r := range rows {
		// rehost-runs holds four runs at once: not one run's RSS.
		if strings.HasPrefix(r.Tool, "rehost") && r.runs() == 0 && r.MaxRSSMiB > peak {
			peak, where = r.MaxRSSMiB, fmt.Sprintf("%s, %s, from a %s, into %s", r.Tool, r.Workload, r.Source, r.Endpoint)
		}
	}
	if where != "" {
		add("RSS ≤ 256 MiB, from a file and from a pipe", peak <= 256, "at most %.0f MiB (%s)", peak, where)
	}
	return out
}

func (res *benchReport) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Measured %s on %s; %d repetitions, tools alternating in one loop; %d MiB parts, %d in flight, for every uploader.\n",
		res.Date, res.Machine, res.Reps, res.PartSize>>20, res.Concurrency)
	fmt.Fprintf(&b, "Load average at start %.2f %.2f %.2f, at end %.2f %.2f %.2f (the machine is shared: MiB/s is noisy, CPU s/GiB steadier).\n\n",
		res.LoadStart[0], res.LoadStart[1], res.LoadStart[2], res.LoadEnd[0], res.LoadEnd[1], res.LoadEnd[2])
	var ws []string
	for _, w := range res.Workloads {
		d := fmt.Sprintf("%s %d MiB", w.Name, w.Size>>20)
		if w.Allocated < w.Size {
			d += fmt.Sprintf(" (%d MiB of data)", w.Allocated>>20)
		}
		ws = append(ws, d)
	}
	fmt.Fprintf(&b, "Workloads: %s. Figures are medians; ×best is the ratio to the best peer (not rehost) of the same endpoint, workload and source (MiB/s: > 1 is faster; CPU: < 1 is cheaper).\n\n", strings.Join(ws, ", "))
	b.WriteString("| endpoint | workload | source | tool | MiB/s | CPU s/GiB | peak RSS MiB | wire MiB | object MiB | ×best MiB/s | ×best CPU | MiB/s of each run |\n")
	b.WriteString("|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|\n")
	for _, r := range res.Rows {
		wire := "—"
		if r.WireMiB >= 0 {
			wire = fmt.Sprintf("%.0f", r.WireMiB)
		}
		var each []string
		for _, v := range r.EachMiBps {
			each = append(each, fmt.Sprintf("%.0f", v))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %.0f | %.2f | %.0f | %s | %.0f | %.2f | %.2f | %s |\n", r.Endpoint, r.Workload, r.Source, r.Tool,
			r.MiBps, r.CPUPerGiB, r.MaxRSSMiB, wire, r.ObjectMiB, r.XMiBps, r.XCPU, strings.Join(each, ", "))
	}
	if len(res.Goals) > 0 {
		b.WriteString("\nGoals (issue 23, on the discard endpoint):\n\n| goal | measured | met |\n|---|---|---|\n")
		for _, g := range res.Goals {
			met := "no"
			if g.Met {
				met = "yes"
			}
			fmt.Fprintf(&b, "| %s | %s | %s |\n", g.Goal, g.Measured, met)
		}
	}
	for _, p := range res.Profiles {
		fmt.Fprintf(&b, "\nCPU profile: %s, into the discard endpoint (`go tool pprof -top`):\n\n```\n%s\n```\n", p.Title, p.Top)
	}
	return b.String()
}

const (
	benchBegin = "<!-- generated by BenchmarkStage (scripts/bench-staging): begin -->"
	benchEnd   = "<!-- generated by BenchmarkStage: end -->"
)

// write stores the JSON and replaces the generated section of
// docs/benchmarks.md.
func (res *benchReport) write(root, table string) error {
	js, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(root, "docs", "bench"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "docs", "bench", "staging.json"), append(js, '\n'), 0o644); err != nil {
		return err
	}
	md := filepath.Join(root, "docs", "benchmarks.md")
	doc, err := os.ReadFile(md)
	if err != nil {
		return err
	}
	s := string(doc)
	i, j := strings.Index(s, benchBegin), strings.Index(s, benchEnd)
	if i < 0 || j < i {
		return fmt.Errorf("%s: the markers of the generated staging section are missing (%q … %q)", md, benchBegin, benchEnd)
	}
	s = s[:i+len(benchBegin)] + "\n\n" + table + "\n" + s[j:]
	return os.WriteFile(md, []byte(s), 0o644)
}

// runs is how many disks the row's tool stages (0: one stream).
func (r benchRow) runs() int {
	i := slices.IndexFunc(benchTools, func(t tool) bool { return t.name == r.Tool })
	if i < 0 {
		return 0
	}
	return benchTools[i].runs
}
