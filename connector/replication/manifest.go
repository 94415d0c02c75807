package replication

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// The manifest of a disk is the SHA-256 of every 512 KiB block of the
// source disk at the point in time its replica equals, carried forward run
// to run: a run rewrites the chunks its changed blocks fall in, at the
// replica's seq, and the store keeps each chunk's newest version. It is
// what a verification compares the replica's blocks with, and what tells a
// block read again (a resync) from one that changed.

// chunkBlocks is the number of blocks a manifest chunk holds (128 MiB of
// disk; 8 KiB of checksums before compression).
const chunkBlocks = 256

// zeroEntry is a block that reads as zeros (never written, or written
// with zeros): sha256 never yields it, and runs of it compress to nothing.
var zeroEntry [sha256.Size]byte

var zeroBlock = make([]byte, awstarget.BlockSize)

// zeroBlockSum is the SHA-256 of a block of zeros, as EBS checks it.
var zeroBlockSum = sha256.Sum256(zeroBlock)

// entryOf is the manifest entry of a block's data.
func entryOf(data []byte) [sha256.Size]byte {
	if bytes.Equal(data, zeroBlock) {
		return zeroEntry
	}
	return sha256.Sum256(data)
}

// chunk is one chunk of a disk's manifest.
type chunk struct {
	index   int64
	sums    [chunkBlocks][sha256.Size]byte
	changed bool
}

func (c *chunk) first() int64 { return c.index * chunkBlocks }

func (c *chunk) entry(block int64) [sha256.Size]byte { return c.sums[block-c.first()] }

func (c *chunk) set(block int64, e [sha256.Size]byte) {
	if c.sums[block-c.first()] != e {
		c.sums[block-c.first()], c.changed = e, true
	}
}

// encode flattens and compresses the chunk.
func (c *chunk) encode() []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestSpeed)
	for i := range c.sums {
		w.Write(c.sums[i][:])
	}
	w.Close()
	return b.Bytes()
}

func decodeChunk(index int64, data []byte) (*chunk, error) {
	c := &chunk{index: index}
	r := flate.NewReader(bytes.NewReader(data))
	defer r.Close()
	for i := range c.sums {
		if _, err := io.ReadFull(r, c.sums[i][:]); err != nil {
			return nil, fmt.Errorf("manifest chunk %d is damaged: %w", index, err)
		}
	}
	return c, nil
}

// manifest reads one disk's manifest as of a seq (none: every block reads
// as zeros, a new chain) and writes chunks at another.
type manifest struct {
	st      store.Replicas
	job     string
	disk    string
	readSeq int64 // -1: nothing to read (a new chain)
	seq     int64 // where changed chunks are written
}

// load returns chunk index as of readSeq.
func (m *manifest) load(ctx context.Context, index int64) (*chunk, error) {
	if m.readSeq < 0 {
		return &chunk{index: index}, nil
	}
	mc, err := m.st.ManifestChunk(ctx, m.job, m.disk, index, m.readSeq)
	if errors.Is(err, store.ErrNotFound) {
		return &chunk{index: index}, nil
	}
	if err != nil {
		return nil, err
	}
	return decodeChunk(index, mc.Data)
}

// save stores a changed chunk at seq.
func (m *manifest) save(ctx context.Context, c *chunk) error {
	if !c.changed {
		return nil
	}
	return m.st.PutManifestChunk(ctx, store.ManifestChunk{JobID: m.job, DiskKey: m.disk, Chunk: c.index, Seq: m.seq, Data: c.encode()})
}

// chunkCache keeps the last few chunks read, for lookups at random.
type chunkCache struct {
	m     *manifest
	byIdx map[int64]*chunk
	order []int64
}

func (c *chunkCache) entry(ctx context.Context, block int64) ([sha256.Size]byte, error) {
	idx := block / chunkBlocks
	ch, ok := c.byIdx[idx]
	if !ok {
		var err error
		if ch, err = c.m.load(ctx, idx); err != nil {
			return zeroEntry, err
		}
		if c.byIdx == nil {
			c.byIdx = map[int64]*chunk{}
		}
		if len(c.order) >= 16 {
			delete(c.byIdx, c.order[0])
			c.order = c.order[1:]
		}
		c.byIdx[idx], c.order = ch, append(c.order, idx)
	}
	return ch.entry(block), nil
}
