package disk

import (
	"bytes"
	"math"
	"testing"
	"time"
)

// paceModel is a stream with given rates: the link's and the source's in
// bytes/s, and per encoding the compressors' rate (all workers) and ratio.
type paceModel struct {
	link, src float64
	cpu       map[string]float64
	ratio     map[string]float64
}

// drive runs grains through the pacer as the pipeline would with those
// rates: each grain's times are its bytes over the stage's rate, and the
// writer waits for the slowest stage.
func (m paceModel) drive(p *pacer, grains int) {
	const workers = 2
	p.workers = workers
	sec := func(n float64, r float64) time.Duration { return time.Duration(n / r * float64(time.Second)) }
	for range grains {
		lv := p.level()
		enc := encodingOf(lv)
		in := float64(vmdkGrainSize)
		out := in * m.ratio[enc]
		g := grainTiming{level: lv, in: vmdkGrainSize, out: int64(out),
			fill: sec(in, m.src), busy: sec(in, m.cpu[enc]/workers), writeTime: sec(out, m.link)}
		step := max(g.fill, g.busy/workers, g.writeTime)
		g.wait = step - g.writeTime
		p.observe(g)
	}
}

func near(got int64, want float64) bool { return math.Abs(float64(got)-want) <= 0.02*want }

// The pacer, given the rates of a stream, deflates where the link is the
// bottleneck, sends the data as it is where the compressors are, and
// records the rates it chose on.
func TestPacerChoosesByTheBottleneck(t *testing.T) {
	const MB = 1e6
	text := map[string]float64{EncodeDeflate: 0.2, EncodeHuffman: 0.5, EncodeStore: 1.0}
	cpu := map[string]float64{EncodeDeflate: 200 * MB, EncodeHuffman: 300 * MB, EncodeStore: 3000 * MB}
	for _, c := range []struct {
		name   string
		m      paceModel
		choice string
		neck   string
	}{
		// 4 MB/s link: deflated, the stream runs at 20 MB/s of data; as is
		// only at 4.
		{"tight link", paceModel{link: 4 * MB, src: 500 * MB, cpu: cpu, ratio: text}, EncodeDeflate, BottleneckLink},
		// A fast link: compressing only holds the stream up.
		{"fast link", paceModel{link: 2000 * MB, src: 1000 * MB, cpu: cpu, ratio: text}, EncodeStore, BottleneckSource},
		// 160 MB/s link: Huffman coding is fastest (300 MB/s by CPU, 320
		// by the link at half the size), storing runs at 160 and deflating
		// at 200 (by CPU).
		{"middle link", paceModel{link: 160 * MB, src: 1000 * MB, cpu: cpu, ratio: text}, EncodeHuffman, BottleneckCPU},
		// A slow source and a fast link: every encoding runs at the
		// source's rate, so the one costing the least CPU.
		{"slow source", paceModel{link: 2000 * MB, src: 50 * MB, cpu: cpu, ratio: text}, EncodeStore, BottleneckSource},
		// Data that does not compress: storing is as fast and cheapest.
		{"random data", paceModel{link: 4 * MB, src: 500 * MB, cpu: cpu, ratio: map[string]float64{EncodeDeflate: 1, EncodeHuffman: 1, EncodeStore: 1}}, EncodeStore, BottleneckLink},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPacer(CompressAdaptive)
			c.m.drive(p, 6*paceWindow)
			var st StreamStats
			got := p.report(&st)
			if got.Choice != c.choice || got.Bottleneck != c.neck {
				t.Errorf("chose %s (%s the bottleneck), want %s (%s): %+v", got.Choice, got.Bottleneck, c.choice, c.neck, got)
			}
			if got.Decisions != 6 || got.Format != "vmdk" {
				t.Errorf("%d decisions of %s, want 6 of vmdk", got.Decisions, got.Format)
			}
			// The rates recorded are the ones given.
			if !near(got.SourceBps, c.m.src) {
				t.Errorf("source %d B/s recorded, given %.0f", got.SourceBps, c.m.src)
			}
			if len(got.Encodings) != 3 {
				t.Fatalf("encodings %+v, want the three estimated", got.Encodings)
			}
			for _, e := range got.Encodings {
				if !near(e.CPUBps, c.m.cpu[e.Encoding]) || math.Abs(e.Ratio-c.m.ratio[e.Encoding]) > 0.01 {
					t.Errorf("%s: %d B/s at ratio %.3f recorded, given %.0f at %.3f", e.Encoding, e.CPUBps, e.Ratio, c.m.cpu[e.Encoding], c.m.ratio[e.Encoding])
				}
			}
			// The link is measured where it held the stream up.
			if c.neck == BottleneckLink && (!near(got.LinkBps, c.m.link) || !near(got.LinkHeldBps, c.m.link)) {
				t.Errorf("link %d B/s recorded (%d when it held the writer up), given %.0f", got.LinkBps, got.LinkHeldBps, c.m.link)
			}
		})
	}
}

// A link that slows down mid-stream (a bandwidth cap set) turns the
// pacer from sending to deflating at once, and back when it is lifted
// within a few hundred MiB (the link's estimate grows by paceGrow a window
// while the deflated output does not fill it).
func TestPacerFollowsTheLink(t *testing.T) {
	const MB = 1e6
	m := paceModel{link: 2000 * MB, src: 1000 * MB,
		cpu:   map[string]float64{EncodeDeflate: 200 * MB, EncodeHuffman: 300 * MB, EncodeStore: 3000 * MB},
		ratio: map[string]float64{EncodeDeflate: 0.2, EncodeHuffman: 0.5, EncodeStore: 1.0}}
	p := newPacer(CompressAdaptive)
	var st StreamStats
	for _, step := range []struct {
		link   float64
		choice string
	}{{2000 * MB, EncodeStore}, {4 * MB, EncodeDeflate}, {2000 * MB, EncodeStore}} {
		m.link = step.link
		m.drive(p, 24*paceWindow)
		if got := p.report(&st); got.Choice != step.choice {
			t.Errorf("link at %.0f B/s: chose %s, want %s (%+v)", step.link, got.Choice, step.choice, got)
		}
	}
	if got := p.report(&st); got.Switches < 2 {
		t.Errorf("%d switches, want at least 2", got.Switches)
	}
}

// A fixed compression never changes, and says which it is.
func TestPacerFixed(t *testing.T) {
	for c, want := range map[Compression]string{CompressSmall: EncodeDeflate, CompressFast: EncodeHuffman, CompressStore: EncodeStore} {
		p := newPacer(c)
		paceModel{link: 1e6, src: 1e9, cpu: map[string]float64{want: 1e8}, ratio: map[string]float64{want: 0.5}}.drive(p, 3*paceWindow)
		var st StreamStats
		if got := p.report(&st); got.Choice != want || got.Decisions != 0 {
			t.Errorf("compression %d: %+v, want %s and no decision", c, got, want)
		}
	}
}

// The Encoder reports the pacing of a real stream: grains counted by
// encoding, and the choice among the measured encodings.
func TestEncoderReportsPacing(t *testing.T) {
	data := make([]byte, 3*paceWindow*vmdkGrainSize)
	words := []string{"grain ", "disk ", "the ", "replication\n", "vm-42 "}
	for i, k := 0, 0; i < len(data); k++ {
		i += copy(data[i:], words[(k*7+k/5)%len(words)])
	}
	enc := NewEncoder(NewRaw(bytes.NewReader(data), int64(len(data))), VMDK, EncodeOptions{})
	var buf bytes.Buffer
	if _, err := enc.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	p := enc.Pacing()
	if p.Format != "vmdk" || p.Decisions != 3 || len(p.Encodings) != 3 || p.Choice == "" {
		t.Fatalf("pacing %+v", p)
	}
	if p.Deflated+p.Huffman+p.Stored != int64(len(data)/vmdkGrainSize) || p.BytesIn != int64(len(data)) || p.BytesOut >= p.BytesIn {
		t.Errorf("grains %+v of %d bytes", p, len(data))
	}
	// The probes keep every encoding in use whatever the choice.
	if p.Deflated == 0 || p.Huffman == 0 {
		t.Errorf("grains %d deflated, %d Huffman-coded: the probes are missing", p.Deflated, p.Huffman)
	}
	if got := NewEncoder(NewRaw(bytes.NewReader(data), int64(len(data))), VHD, EncodeOptions{}).Pacing(); got.Format != "vhd" || got.Choice != "" {
		t.Errorf("a VHD's pacing %+v", got)
	}
}
