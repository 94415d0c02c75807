package web

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/store"
)

// jobEvery says how far apart a job's automatic runs are: "15 min" for
// an incremental job's sub-hour frequency, else "12 h".
func jobEvery(j api.ReplicationJob) string {
	if j.Rehost != nil && j.Rehost.FrequencyMinutes > 0 {
		return strconv.Itoa(j.Rehost.FrequencyMinutes) + " min"
	}
	return strconv.Itoa(j.Frequency) + " h"
}

// jobMode is a job's mode as the API spells it ("full" when it says none).
func jobMode(j api.ReplicationJob) string {
	if j.Rehost != nil && j.Rehost.Mode != "" {
		return j.Rehost.Mode
	}
	return "full"
}

// replicationOf is what a run moved and proved, nil when it says nothing.
func replicationOf(r api.ReplicationRun) *api.RunReplication {
	if r.Rehost == nil {
		return nil
	}
	return r.Rehost.Replication
}

// bytesText is a byte count in IEC units with the exact count beside it.
func bytesText(n int64) string {
	return fmt.Sprintf("%s (%s bytes)", iec(n), strconv.FormatInt(n, 10))
}

// choiceText is a grain encoding in words.
func choiceText(c string) string {
	switch c {
	case disk.EncodeDeflate:
		return "deflated"
	case disk.EncodeHuffman:
		return "Huffman-coded"
	case disk.EncodeStore:
		return "sent as they are"
	}
	return "—"
}

// measuredRate is a rate the pacer measured (as the bandwidth cap is
// written), a dash before it measured any.
func measuredRate(bps int64, decisions int) string {
	if decisions == 0 {
		return "—"
	}
	return rateText(float64(bps))
}

// grainsText counts a disk's grains by how they were written.
func grainsText(p disk.Pacing) string {
	return fmt.Sprintf("%d deflated, %d Huffman-coded, %d stored, %d empty; %d decisions, %d switches", p.Deflated, p.Huffman, p.Stored, p.Zero, p.Decisions, p.Switches)
}

// verifiedHow says which blocks a verification read back.
func verifiedHow(v store.Verification) string {
	if v.Full {
		return "every block (full verification)"
	}
	return fmt.Sprintf("%d changed blocks and a random sample of %d unchanged ones", v.Blocks-v.Sampled, v.Sampled)
}

// The bytes-sent chart's drawing area, in SVG user units.
const (
	chartW, chartH = 640, 180
	chartLeft      = 72 // room for the scale's labels
	chartTop       = 12
	chartBottom    = 24 // room for the runs' labels
	chartMaxBar    = 48
)

// chartBar is one run's bar.
type chartBar struct {
	RunID, Label, Title string
	X, Y, W, H          int
	Failed              bool
}

// chartView is the chart of bytes sent per run of a job, oldest first.
type chartView struct {
	Bars []chartBar
	// Max is the scale's top, in bytes; Summary says the chart in words.
	Max     int64
	Summary string
}

// sentChart lays out the bytes each run sent, oldest first, scaled to the
// largest (runs newest first, as the API gives them). Runs that say
// nothing of what they moved (before it was recorded, or not started) are
// left out; nil when none is left.
func sentChart(runs []api.ReplicationRun) *chartView {
	var pick []api.ReplicationRun
	for _, r := range runs {
		if rep := replicationOf(r); rep != nil && !store.RunState(r.State).Live() {
			pick = append(pick, r)
		}
	}
	if len(pick) == 0 {
		return nil
	}
	slices.Reverse(pick)
	c := &chartView{}
	var total int64
	for _, r := range pick {
		c.Max = max(c.Max, replicationOf(r).BytesSent)
		total += replicationOf(r).BytesSent
	}
	plotW, plotH := chartW-chartLeft-8, chartH-chartTop-chartBottom
	slot := plotW / len(pick)
	w := min(chartMaxBar, max(2, slot*2/3))
	for i, r := range pick {
		sent := replicationOf(r).BytesSent
		h := 0
		if c.Max > 0 {
			h = int(int64(plotH) * sent / c.Max)
		}
		if sent > 0 {
			h = max(h, 1) // a run that sent anything shows
		}
		c.Bars = append(c.Bars, chartBar{RunID: r.ReplicationRunID, Label: strconv.Itoa(i + 1),
			Title: fmt.Sprintf("run %d, %s (%s): %s sent", i+1, r.ReplicationRunID, replicationOf(r).Mode, bytesText(sent)),
			X:     chartLeft + i*slot + (slot-w)/2, Y: chartTop + plotH - h, W: w, H: h,
			Failed: r.State == string(store.RunFailed)})
	}
	c.Summary = fmt.Sprintf("Bytes sent by each of the last %d runs, oldest first: %s in all, at most %s in one run.", len(pick), iec(total), iec(c.Max))
	return c
}

// chartY is the y of the scale's line at fraction num/den of the top.
func chartY(num, den int) int {
	plotH := chartH - chartTop - chartBottom
	return chartTop + plotH - plotH*num/den
}

// scaleText labels the scale at fraction num/den of max.
func scaleText(maxBytes int64, num, den int) string { return iec(maxBytes * int64(num) / int64(den)) }

func itoa(n int) string { return strconv.Itoa(n) }
