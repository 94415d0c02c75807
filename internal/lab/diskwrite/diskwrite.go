// Package diskwrite is the request every simulated hypervisor of the lab
// (vCenter, Hyper-V, Azure) takes to change a VM's disk while it runs:
// write N blocks of random bytes at given or random offsets into one disk,
// as the guest would, and answer the offsets. With it a user, or a check
// written outside the project, drives incremental runs by hand and knows
// exactly which blocks the next run must carry.
//
// The request is a POST of JSON to the peer's write URL, with the peer's
// own credentials in HTTP Basic authentication:
//
//	{"vm": "web-01", "disk": 1, "blocks": 8, "blockSize": 4096}
//	{"vm": "web-01", "disk": 1, "blockSize": 65536, "offsets": [0, 1048576]}
//
// and the answer is
//
//	{"vm": "web-01", "disk": 1, "blockSize": 4096, "offsets": [...], "bytes": 32768}
//
// Offsets are multiples of the block size (default 4096, a multiple of
// 512, at most 4 MiB), within the disk, sorted; random ones are distinct.
package diskwrite

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
)

// Request asks for blocks to be written into disk Disk of VM VM.
type Request struct {
	VM   string `json:"vm"`
	Disk int    `json:"disk"`
	// Blocks is how many blocks to write at random offsets; ignored when
	// Offsets are given.
	Blocks int `json:"blocks,omitempty"`
	// BlockSize is the size of each block (default 4096).
	BlockSize int64 `json:"blockSize,omitempty"`
	// Offsets are where to write, each a multiple of BlockSize.
	Offsets []int64 `json:"offsets,omitempty"`
}

// Result says what was written.
type Result struct {
	VM        string  `json:"vm"`
	Disk      int     `json:"disk"`
	BlockSize int64   `json:"blockSize"`
	Offsets   []int64 `json:"offsets"`
	Bytes     int64   `json:"bytes"`
}

// Limits of a request.
const (
	DefaultBlockSize = 4096
	MaxBlockSize     = 4 << 20
	MaxBlocks        = 4096
)

// Disk is what a peer knows of one disk: its size and how to write it.
type Disk struct {
	Capacity int64
	Write    func(off int64, p []byte) error
}

// Apply checks r against the disk, picks random offsets when none are
// given, writes a block of random bytes at each, and says what it wrote.
func Apply(r Request, d Disk) (Result, error) {
	bs := r.BlockSize
	if bs == 0 {
		bs = DefaultBlockSize
	}
	if bs < 512 || bs%512 != 0 || bs > MaxBlockSize {
		return Result{}, fmt.Errorf("block size %d: want a multiple of 512 up to %d", bs, MaxBlockSize)
	}
	n := d.Capacity / bs
	offs := slices.Clone(r.Offsets)
	if len(offs) == 0 {
		if r.Blocks <= 0 || r.Blocks > MaxBlocks || int64(r.Blocks) > n {
			return Result{}, fmt.Errorf("blocks %d: want 1 to %d, and at most the %d blocks of the disk", r.Blocks, MaxBlocks, n)
		}
		seen := map[int64]bool{}
		for len(offs) < r.Blocks {
			k := randInt(n)
			if !seen[k] {
				seen[k] = true
				offs = append(offs, k*bs)
			}
		}
	}
	if len(offs) > MaxBlocks {
		return Result{}, fmt.Errorf("%d offsets: at most %d", len(offs), MaxBlocks)
	}
	slices.Sort(offs)
	offs = slices.Compact(offs)
	for _, o := range offs {
		if o < 0 || o%bs != 0 || o+bs > d.Capacity {
			return Result{}, fmt.Errorf("offset %d: want a multiple of %d with the block inside the %d-byte disk", o, bs, d.Capacity)
		}
	}
	buf := make([]byte, bs)
	for _, o := range offs {
		rand.Read(buf)
		if err := d.Write(o, buf); err != nil {
			return Result{}, fmt.Errorf("write %d bytes at %d: %w", bs, o, err)
		}
	}
	return Result{VM: r.VM, Disk: r.Disk, BlockSize: bs, Offsets: offs, Bytes: bs * int64(len(offs))}, nil
}

func randInt(n int64) int64 {
	var b [8]byte
	rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) % uint64(n))
}

// ErrNoDisk is what a lookup answers for a VM or disk the peer lacks.
var ErrNoDisk = errors.New("no such vm or disk")

// Handler serves the request at any path it is mounted on: POST only,
// HTTP Basic with user and password, the disk found by lookup.
func Handler(user, password string, lookup func(vm string, disk int) (Disk, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST a JSON request: {\"vm\": ..., \"disk\": ..., \"blocks\": ...}", http.StatusMethodNotAllowed)
			return
		}
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="rehost lab"`)
			http.Error(w, "the peer's user and password are needed", http.StatusUnauthorized)
			return
		}
		var req Request
		dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			http.Error(w, "read the request: "+err.Error(), http.StatusBadRequest)
			return
		}
		d, err := lookup(req.VM, req.Disk)
		if err != nil {
			status := http.StatusInternalServerError
			if errors.Is(err, ErrNoDisk) {
				status = http.StatusNotFound
			}
			http.Error(w, err.Error(), status)
			return
		}
		res, err := Apply(req, d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(res)
	})
}

// Post sends r to a peer's write URL and reads the answer.
func Post(ctx context.Context, c *http.Client, url, user, password string, r Request) (Result, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return Result{}, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return Result{}, err
	}
	req.SetBasicAuth(user, password)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return Result{}, fmt.Errorf("write blocks: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return Result{}, fmt.Errorf("write blocks: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	var res Result
	return res, json.NewDecoder(resp.Body).Decode(&res)
}
