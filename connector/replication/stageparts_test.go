package replication

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// partCounter counts what the stage step writes of its uploads.
type partCounter struct {
	Store
	mu      sync.Mutex
	parts   map[string]int // "entry/number" → times recorded
	updates int
}

func (c *partCounter) RecordParts(ctx context.Context, id int64, parts []store.LedgerPart) error {
	c.mu.Lock()
	for _, p := range parts {
		c.parts[fmt.Sprintf("%d/%d", id, p.Number)]++
	}
	c.mu.Unlock()
	return c.Store.RecordParts(ctx, id, parts)
}

func (c *partCounter) UpdateData(ctx context.Context, id int64, data json.RawMessage) error {
	c.mu.Lock()
	c.updates++
	c.mu.Unlock()
	return c.Store.UpdateData(ctx, id, data)
}

// Each part of an upload is written to the ledger once, as a part of its
// own; the upload's entry holds the upload without its parts, whatever
// their number, and is never rewritten as parts come.
func TestStagePartsRecordedOnce(t *testing.T) {
	h := newHarness(t)
	c := &partCounter{Store: h.st, parts: map[string]int{}}
	h.e.Store = c
	h.e.ProgressEvery = 1 // a tick between every two parts, as good as
	ami, err := h.e.Run(context.Background(), h.current())
	if err != nil {
		t.Fatal(err)
	}
	h.checkCompleted(ami)
	if c.updates != 0 {
		t.Errorf("upload entries rewritten %d times", c.updates)
	}
	// memtarget's parts are 4 bytes: 23 and 9 bytes make 6 + 3 parts.
	if len(c.parts) != 9 {
		t.Errorf("%d distinct parts recorded, want 9: %v", len(c.parts), c.parts)
	}
	for k, n := range c.parts {
		if n != 1 {
			t.Errorf("part %s recorded %d times", k, n)
		}
	}
	les, err := h.st.LedgerForRun(context.Background(), h.run.ReplicationRunID)
	if err != nil {
		t.Fatal(err)
	}
	for _, le := range les {
		if le.Kind == kindUpload && strings.Contains(string(le.Data), `"parts":[{`) {
			t.Errorf("upload entry holds its parts: %s", le.Data)
		}
	}
}

// An upload recorded by an older connector (its parts in the entry's data)
// still resumes from them.
func TestStageResumesFromPartsInTheEntry(t *testing.T) {
	h2 := newHarness(t)
	ctx := context.Background()
	key := awstarget.StagingKey(h2.job.ReplicationJobID, h2.run.ReplicationRunID, 0, formatOf("disk-0.raw"))
	var track awstarget.Tracker
	cut := 0
	h2.w.hook = func(op, phase string) error {
		if op == "Part" {
			if cut++; cut == 3 {
				return fmt.Errorf("cut: %w", io.ErrUnexpectedEOF)
			}
		}
		return nil
	}
	_, err := h2.w.target.Stage(ctx, awstarget.StageInput{Key: key, Body: strings.NewReader(string(h2.w.data[h2.vm.ID][0])), Tracker: &track, KeepOnFailure: true})
	if err == nil {
		t.Fatal("cut stage succeeded")
	}
	h2.w.hook = nil
	old, _ := track.Upload()
	n := len(old.Parts)
	if n < 2 {
		t.Fatalf("tracker holds %d parts, want at least 2", n)
	}
	id, err := h2.st.RecordIntent(ctx, h2.run.ReplicationRunID, StepStage, kindUpload, mustJSON(uploadIntent{Disk: 0, Key: key}))
	if err == nil {
		err = h2.st.RecordCreated(ctx, id, old.UploadID, mustJSON(old))
	}
	if err != nil {
		t.Fatal(err)
	}
	le, err := h2.st.GetLedgerEntry(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	r := &run{e: h2.e}
	up, err := r.recordedUpload(ctx, le)
	if err != nil || up.UploadID != old.UploadID || len(up.Parts) != n || up.Parts[n-1].Number != int32(n) {
		t.Fatalf("recorded upload %+v, %v", up, err)
	}
	// Ledger parts of this upload join them; those of another upload (one
	// started over) are ignored.
	if err := h2.st.RecordParts(ctx, id, []store.LedgerPart{
		{Number: int64(n + 1), Data: mustJSON(recordedPart{awstarget.Part{Number: int32(n + 1), Size: 4, ETag: "e+1", Checksum: "c"}, old.UploadID})},
		{Number: int64(n + 2), Data: mustJSON(recordedPart{awstarget.Part{Number: int32(n + 2), Size: 4, ETag: "e+2", Checksum: "c"}, "another-upload"})},
	}); err != nil {
		t.Fatal(err)
	}
	if up, err = r.recordedUpload(ctx, le); err != nil || len(up.Parts) != n+1 || up.Parts[n].ETag != "e+1" {
		t.Fatalf("recorded upload with ledger parts %+v, %v", up, err)
	}
}
