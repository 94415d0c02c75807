package disk

import (
	"cmp"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/flate"
)

// Grain encodings, as Pacing names them.
const (
	EncodeDeflate = "deflate" // deflate at StreamCompressionLevel
	EncodeHuffman = "huffman" // Huffman coding only, no match search
	EncodeStore   = "store"   // stored blocks: the data as it is
)

// Bottlenecks, as Pacing names them: what the stream waited on.
const (
	BottleneckLink   = "link"   // writing the output (the upload, a bandwidth cap)
	BottleneckCPU    = "cpu"    // the compressors
	BottleneckSource = "source" // reading the disk
)

// Pacing is what the adaptive streamOptimized writer chose for a disk's
// grains and the rates it chose on, measured while it wrote: how fast the
// output drained (the link), how fast the source delivered, and for each
// encoding how fast the compressors got through data and how much it
// shrank. The compressors' rates are bytes of grains that hold data per
// second (all-zero grains cost nothing and are left out).
type Pacing struct {
	// Format is the image format written ("vmdk", "vhd", "raw"); a VHD
	// or raw image has no grains to pace, and Plan may say why it was
	// chosen.
	Format string `json:"format"`
	Plan   string `json:"plan,omitempty"`
	// Choice is the encoding of the grains being written now (after the
	// last decision); Bottleneck what limits it.
	Choice     string `json:"choice,omitempty"`
	Bottleneck string `json:"bottleneck,omitempty"`
	// Decisions counts the windows of grains decided on; Switches how
	// often the choice changed.
	Decisions int `json:"decisions"`
	Switches  int `json:"switches"`
	// LinkBps and SourceBps are the last window's rates: output bytes
	// written per second spent writing (see pacer), bytes read per second
	// spent reading, holes included.
	LinkBps   int64 `json:"linkBps"`
	SourceBps int64 `json:"sourceBps"`
	// LinkHeldBps is the link's rate the last time it held the writer up
	// (its writes took longer than the waits for the compressors): the
	// rate a bandwidth cap or a slow upload allows; 0 if it never did.
	LinkHeldBps int64 `json:"linkHeldBps,omitempty"`
	// Encodings are the estimates of each encoding the decision compared.
	Encodings []EncodingRate `json:"encodings,omitempty"`
	// Grains by how they were written, and the data's bytes before and
	// after encoding.
	Deflated int64 `json:"deflated"`
	Huffman  int64 `json:"huffman"`
	Stored   int64 `json:"stored"`
	Zero     int64 `json:"zero"`
	BytesIn  int64 `json:"bytesIn"`
	BytesOut int64 `json:"bytesOut"`
}

// EncodingRate is what one grain encoding costs, as measured.
type EncodingRate struct {
	Encoding string `json:"encoding"`
	// CPUBps is the data the compressors encode per second, all of
	// them together.
	CPUBps int64 `json:"cpuBps"`
	// Ratio is the output's size over the input's.
	Ratio float64 `json:"ratio"`
	// Bps is the stream's rate with this encoding, the source aside: the
	// lesser of the compressors' and the link's over the ratio.
	Bps int64 `json:"bps"`
}

// paceLevels are the encodings the adaptive pacer chooses among, in order
// of CPU spent.
var paceLevels = [...]struct {
	name  string
	level int
}{{EncodeStore, storeGrain}, {EncodeHuffman, flate.HuffmanOnly}, {EncodeDeflate, deflateGrain}}

// deflateGrain stands for StreamCompressionLevel in paceLevels (a
// variable).
const deflateGrain = -100

func encodingOf(level int) string {
	switch level {
	case storeGrain:
		return EncodeStore
	case flate.HuffmanOnly:
		return EncodeHuffman
	}
	return EncodeDeflate
}

const (
	// paceWindow is how many grains (8 MiB) each adaptive decision covers.
	paceWindow = 128
	// paceProbe: one grain in paceProbe is encoded at one of the other
	// levels, so each level's cost stays measured whichever is chosen.
	paceProbe = 32
	// paceTie: a level within this fraction of the fastest counts as fast
	// as it, and the one spending the least CPU of those is chosen.
	paceTie = 0.05
	// paceSmooth weighs a window's measurement of a level into its
	// estimate (the probes are few grains).
	paceSmooth = 0.5
	// paceGrow is how much the link's estimate may grow over a window in
	// which the link did not hold the writer up.
	paceGrow = 1.25
	// paceRecent is how many windows after the link last held the writer
	// up it is still reported as the bottleneck where it would be at the
	// rate it held it at.
	paceRecent = 16
)

// pacer picks how the next grains are encoded. Adaptive, it measures over
// each window of grains how fast the output drains (bytes over the time
// the in-order writer spent writing: when the link is the bottleneck the
// writes block), how fast the source delivers, and for every level (the
// chosen one, and a few probe grains of the others) the compressors' rate
// and the ratio. The stream's rate with a level is the lesser of its
// compressors' and the link's over its ratio (the source's is the same
// whatever the level); the next window uses the fastest level, and among
// levels about as fast the one spending the least CPU: deflate where the
// link is what the stream waits on, the data as it is where the CPU is.
type pacer struct {
	fixed    int // the level when not adaptive
	adaptive bool
	workers  int
	cur      atomic.Int64 // the chosen level
	seq      atomic.Int64 // grains handed out (producer)

	// Writer goroutine only.
	n                  int
	write, fill, wait  time.Duration
	link               float64 // the link's estimate, bytes/s (0: none yet)
	held               float64 // the link's rate when it last held the writer up
	sinceHeld          int     // decisions since
	out, data          int64
	in, enc            [len(paceLevels)]int64
	busy               [len(paceLevels)]time.Duration
	est                [len(paceLevels)]EncodingRate
	known              [len(paceLevels)]bool
	decisions, changes int

	mu   sync.Mutex
	last Pacing // the last decision, for Pacing
}

func newPacer(c Compression) *pacer {
	p := &pacer{}
	switch c {
	case CompressSmall:
		p.fixed = StreamCompressionLevel
	case CompressFast:
		p.fixed = flate.HuffmanOnly
	case CompressStore:
		p.fixed = storeGrain
	default:
		p.adaptive = true
		p.fixed = StreamCompressionLevel
	}
	p.cur.Store(int64(p.fixed))
	return p
}

// level is how the grain read next is to be encoded (producer goroutine).
func (p *pacer) level() int {
	cur := int(p.cur.Load())
	if !p.adaptive {
		return cur
	}
	k := p.seq.Add(1) - 1
	if k%paceProbe != paceProbe/2 {
		return cur
	}
	// The probes take the other levels in turn.
	others := make([]int, 0, len(paceLevels)-1)
	for _, l := range paceLevels {
		if lv := levelValue(l.level); lv != cur {
			others = append(others, lv)
		}
	}
	return others[(k/paceProbe)%int64(len(others))]
}

// levelValue is a paceLevels level as a grainJob level.
func levelValue(l int) int {
	if l == deflateGrain {
		return StreamCompressionLevel
	}
	return l
}

func levelIndex(level int) int {
	for i, l := range paceLevels {
		if levelValue(l.level) == level {
			return i
		}
	}
	return len(paceLevels) - 1
}

// grainTiming is what the pipeline measured of one grain.
type grainTiming struct {
	level     int
	zero      bool
	in, out   int64         // the grain's data and its encoded bytes (0, 0 when zero)
	fill      time.Duration // reading it from the source
	busy      time.Duration // the worker's time on it
	writeTime time.Duration // writing it out
	wait      time.Duration // the writer waiting for its encoding
}

// observe adds one grain (writer goroutine), and decides at the end of a
// window.
func (p *pacer) observe(g grainTiming) {
	if !p.adaptive {
		return
	}
	p.fill += g.fill
	p.write += g.writeTime
	p.wait += g.wait
	if !g.zero {
		i := levelIndex(g.level)
		p.in[i] += g.in
		p.enc[i] += g.out
		p.busy[i] += g.busy
		p.data += g.in
		p.out += g.out
	}
	// The first decision comes after half a window, so a stream the
	// starting level does not suit pays for it over 4 MiB, not 8.
	if p.n++; p.n < paceWindow && (p.decisions > 0 || p.n < paceWindow/2) {
		return
	}
	p.decide()
	p.n, p.fill, p.write, p.wait, p.out, p.data = 0, 0, 0, 0, 0, 0
	clear(p.in[:])
	clear(p.enc[:])
	clear(p.busy[:])
}

// rate is n bytes over d, for d of at least a nanosecond.
func rate(n int64, d time.Duration) float64 {
	return float64(n) / max(d, time.Nanosecond).Seconds()
}

// decide folds the window into the estimates and picks the next level.
func (p *pacer) decide() {
	if p.data == 0 {
		return // all holes: nothing learnt
	}
	for i := range paceLevels {
		if p.in[i] == 0 {
			continue
		}
		cpu := rate(p.in[i], p.busy[i]) * float64(max(p.workers, 1))
		ratio := float64(p.enc[i]) / float64(p.in[i])
		e := &p.est[i]
		e.Encoding = paceLevels[i].name
		if !p.known[i] {
			e.CPUBps, e.Ratio, p.known[i] = int64(cpu), ratio, true
			continue
		}
		e.CPUBps = int64(paceSmooth*cpu + (1-paceSmooth)*float64(e.CPUBps))
		e.Ratio = paceSmooth*ratio + (1-paceSmooth)*e.Ratio
	}
	// Writes that took longer than the waits for the compressors were
	// held up by the link: their rate is the link's. Writes that did not
	// block say only that the link took what it was given; the estimate
	// then grows by at most paceGrow a window (measured over the output
	// alone, a link that blocked a moment ago would look infinitely fast
	// as soon as the buffers below have room again), so a link that sped
	// up is seen, and one that did not is measured again when it blocks.
	link := rate(p.out, p.write)
	if p.write > p.wait {
		p.held, p.sinceHeld = link, 0
	} else if p.sinceHeld++; p.link > 0 {
		link = min(link, paceGrow*p.link)
	}
	p.link = link
	src := rate(int64(p.n)*vmdkGrainSize, p.fill)
	choice, neck, rates := choose(link, src, p.est[:], p.known[:])
	if choice < 0 {
		return
	}
	if p.held > 0 && p.sinceHeld < paceRecent {
		// A link that held the writer up a moment ago is what the stream
		// waits on, whatever the buffers below take now.
		neck = bottleneck(p.held, src, p.est[choice])
	}
	level := levelValue(paceLevels[choice].level)
	p.decisions++
	if int64(level) != p.cur.Load() {
		p.changes++
		p.cur.Store(int64(level))
	}
	p.mu.Lock()
	p.last = Pacing{Choice: paceLevels[choice].name, Bottleneck: neck, Decisions: p.decisions, Switches: p.changes,
		LinkBps: clampRate(link), LinkHeldBps: clampRate(p.held), SourceBps: clampRate(src), Encodings: rates}
	p.mu.Unlock()
}

// choose is the decision on measured rates (bytes/s): the link's output
// rate, the source's read rate, and each level's estimate where known.
// The stream's rate with a level is the lesser of its compressors' and the
// link's over its ratio: the source reads at the same rate whatever the
// encoding, so it does not take part (a slow source is reported as the
// bottleneck, nothing more). It returns the index of the level chosen (-1
// when none is known), what bounds the stream with it, and each known
// level's rates.
func choose(link, src float64, est []EncodingRate, known []bool) (int, string, []EncodingRate) {
	var rates []EncodingRate
	speed := make([]float64, len(est))
	best := 0.0
	for i, e := range est {
		if !known[i] {
			continue
		}
		speed[i] = min(float64(e.CPUBps), link/max(e.Ratio, 1e-3))
		best = max(best, speed[i])
		e.Bps = clampRate(speed[i])
		rates = append(rates, e)
	}
	for i := range est {
		// paceLevels go from the least CPU to the most.
		if known[i] && speed[i] >= best*(1-paceTie) {
			return i, bottleneck(link, src, est[i]), rates
		}
	}
	return -1, "", rates
}

// bottleneck is what bounds a stream encoded as e with the link and the
// source at those rates.
func bottleneck(link, src float64, e EncodingRate) string {
	speed := min(float64(e.CPUBps), link/max(e.Ratio, 1e-3))
	switch {
	case src < speed:
		return BottleneckSource
	case speed == float64(e.CPUBps):
		return BottleneckCPU
	}
	return BottleneckLink
}

func clampRate(r float64) int64 {
	if math.IsInf(r, 0) || r > math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return int64(r)
}

// report is the last decision with the grain counts (any goroutine).
func (p *pacer) report(s *StreamStats) Pacing {
	p.mu.Lock()
	out := p.last
	p.mu.Unlock()
	if out.Choice == "" {
		out.Choice = encodingOf(int(p.cur.Load()))
	}
	out.Format = string(VMDK)
	out.Deflated, out.Huffman, out.Stored, out.Zero = s.Deflated.Load(), s.Huffman.Load(), s.Stored.Load(), s.Zero.Load()
	out.BytesIn, out.BytesOut = s.In.Load(), s.Out.Load()
	return out
}

// Summary says the choice and the rates it was made on in a line: "grains
// deflated, the link the bottleneck: link 4.0 MiB/s, source 312.5 MiB/s;
// deflate 180.2 MiB/s to 19%, huffman …; 96 deflated, 32 stored, 0
// Huffman-coded, 12 zero grains". A VHD or raw image: its format and plan.
func (p Pacing) Summary() string {
	if p.Format != string(VMDK) {
		return strings.TrimSuffix(fmt.Sprintf("sent as %s: %s", cmp.Or(p.Format, "is"), p.Plan), ": ")
	}
	var b strings.Builder
	fmt.Fprintf(&b, "grains %s", choiceWords[p.Choice])
	if p.Decisions > 0 {
		fmt.Fprintf(&b, ", the %s the bottleneck (%d decisions, %d switches): link %s", p.Bottleneck, p.Decisions, p.Switches, mibps(p.LinkBps))
		if p.LinkHeldBps > 0 {
			fmt.Fprintf(&b, " (%s when it last held the stream up)", mibps(p.LinkHeldBps))
		}
		fmt.Fprintf(&b, ", source %s;", mibps(p.SourceBps))
		for i, e := range p.Encodings {
			if i > 0 {
				b.WriteString(",")
			}
			fmt.Fprintf(&b, " %s %s to %.0f%%", e.Encoding, mibps(e.CPUBps), 100*e.Ratio)
		}
	}
	fmt.Fprintf(&b, "; %d deflated, %d Huffman-coded, %d stored, %d zero grains", p.Deflated, p.Huffman, p.Stored, p.Zero)
	if p.BytesIn > 0 {
		fmt.Fprintf(&b, "; data to %.0f%%", 100*float64(p.BytesOut)/float64(p.BytesIn))
	}
	if p.Plan != "" {
		b.WriteString("; " + p.Plan)
	}
	return b.String()
}

var choiceWords = map[string]string{EncodeDeflate: "deflated", EncodeHuffman: "Huffman-coded", EncodeStore: "stored as they are"}

// mibps is a rate in MiB/s.
func mibps(bps int64) string {
	return fmt.Sprintf("%.1f MiB/s", float64(bps)/(1<<20))
}
