package emulator

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// serveEBS is the EBS direct REST-JSON API.
func (e *Emulator) serveEBS(w http.ResponseWriter, r *http.Request, body []byte) {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	op := ""
	switch {
	case r.Method == http.MethodPost && len(parts) == 1 && parts[0] == "snapshots":
		op = "StartSnapshot"
	case r.Method == http.MethodPost && len(parts) == 3 && parts[0] == "snapshots" && parts[1] == "completion":
		op = "CompleteSnapshot"
	case r.Method == http.MethodPut && len(parts) == 4 && parts[0] == "snapshots" && parts[2] == "blocks":
		op = "PutSnapshotBlock"
	case r.Method == http.MethodGet && len(parts) == 4 && parts[0] == "snapshots" && parts[2] == "blocks":
		op = "GetSnapshotBlock"
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "snapshots" && parts[2] == "blocks":
		op = "ListSnapshotBlocks"
	case r.Method == http.MethodGet && len(parts) == 3 && parts[0] == "snapshots" && parts[2] == "changedblocks":
		op = "ListChangedBlocks"
	}
	if e.delay(r.Context(), op) != nil {
		return
	}
	var err error
	switch op {
	case "StartSnapshot":
		err = e.startSnapshot(w, body)
	case "CompleteSnapshot":
		err = e.completeSnapshot(w, r, parts[2])
	case "PutSnapshotBlock":
		err = e.putSnapshotBlock(w, r, parts[1], parts[3], body)
	case "GetSnapshotBlock":
		err = e.getSnapshotBlock(w, r, parts[1], parts[3])
	case "ListSnapshotBlocks":
		err = e.listSnapshotBlocks(w, r, parts[1])
	case "ListChangedBlocks":
		err = e.listChangedBlocks(w, r, parts[1])
	default:
		err = &ebsError{http.StatusNotFound, "ResourceNotFoundException", "no EBS direct operation at " + r.Method + " " + r.URL.Path, ""}
	}
	if err != nil {
		ee, ok := err.(*ebsError)
		if !ok {
			ee = &ebsError{http.StatusInternalServerError, "InternalServerException", err.Error(), ""}
		}
		writeJSONError(w, ee.status, ee.typ, ee.msg, ee.reason)
	}
}

type ebsError struct {
	status   int
	typ, msg string
	reason   string
}

func (e *ebsError) Error() string { return e.typ + ": " + e.msg }

func ebsValidation(reason, format string, args ...any) *ebsError {
	return &ebsError{http.StatusBadRequest, "ValidationException", fmt.Sprintf(format, args...), reason}
}

func ebsNotFound(id string) *ebsError {
	return &ebsError{http.StatusNotFound, "ResourceNotFoundException", "The snapshot '" + id + "' does not exist.", "SNAPSHOT_NOT_FOUND"}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

type ebsTag struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

func epoch(t time.Time) float64 { return float64(t.UnixMilli()) / 1000 }

func (e *Emulator) startSnapshot(w http.ResponseWriter, body []byte) error {
	var in struct {
		VolumeSize       *int64   `json:"VolumeSize"`
		ParentSnapshotID string   `json:"ParentSnapshotId"`
		Tags             []ebsTag `json:"Tags"`
		Description      string   `json:"Description"`
		ClientToken      string   `json:"ClientToken"`
		Encrypted        bool     `json:"Encrypted"`
		KmsKeyArn        string   `json:"KmsKeyArn"`
		Timeout          int      `json:"Timeout"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return ebsValidation("INVALID_PARAMETER_VALUE", "the request body is not valid JSON: %v", err)
	}
	if in.VolumeSize == nil || *in.VolumeSize < 1 || *in.VolumeSize > 65536 {
		return ebsValidation("INVALID_VOLUME_SIZE", "VolumeSize must be from 1 to 65536 GiB")
	}
	if in.Encrypted && in.ParentSnapshotID != "" {
		// The child of a snapshot takes its encryption from it.
		return ebsValidation("INVALID_PARAMETER_VALUE", "you cannot specify Encrypted and ParentSnapshotId in the same request")
	}
	if in.Timeout != 0 && (in.Timeout < 10 || in.Timeout > 4320) {
		return ebsValidation("INVALID_PARAMETER_VALUE", "Timeout must be from 10 to 4320 minutes")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if in.ClientToken != "" {
		for _, s := range e.st.Snapshots {
			if s.ClientToken == in.ClientToken {
				e.writeStartSnapshot(w, s)
				return nil
			}
		}
	}
	var parent *Snapshot
	if in.ParentSnapshotID != "" {
		p, ok := e.st.Snapshots[in.ParentSnapshotID]
		if !ok {
			return ebsNotFound(in.ParentSnapshotID)
		}
		if e.ebsStateLocked(p) != "completed" {
			return ebsValidation("INVALID_SNAPSHOT_ID", "parent snapshot %s is %s, not completed", p.ID, p.State)
		}
		if *in.VolumeSize < p.VolumeSize {
			return ebsValidation("INVALID_VOLUME_SIZE", "VolumeSize %d is smaller than the parent's %d GiB", *in.VolumeSize, p.VolumeSize)
		}
		parent = p
	}
	s := &Snapshot{ID: newID("snap"), Description: in.Description, State: "pending", Progress: "0%",
		Started: e.clock.Now().UTC(), VolumeSize: *in.VolumeSize, SourceSize: *in.VolumeSize * gib,
		Encrypted: in.Encrypted, KmsKeyID: in.KmsKeyArn, Blocks: map[int32]string{}, Checksums: map[int32]string{},
		ClientToken: in.ClientToken, TimeoutMinutes: cmp.Or(in.Timeout, 60)}
	if parent != nil && parent.Encrypted {
		s.Encrypted = true
		s.KmsKeyID = cmp.Or(in.KmsKeyArn, parent.KmsKeyID)
	}
	if s.Encrypted && s.KmsKeyID == "" {
		s.KmsKeyID = "arn:aws:kms:" + e.cfg.Region + ":" + e.cfg.AccountID + ":alias/aws/ebs"
	}
	for _, t := range in.Tags {
		s.Tags = setTags(s.Tags, []Tag{{Key: t.Key, Value: t.Value}})
	}
	if err := e.createContentLocked(s, parent); err != nil {
		return err
	}
	if parent != nil {
		s.Parent = parent.ID
	}
	e.st.Snapshots[s.ID] = s
	e.saveLocked()
	e.writeStartSnapshot(w, s)
	return nil
}

// createContentLocked makes s's content file (empty: it holds the blocks s
// will write) and gives s parent's blocks by reference, when parent is not
// nil.
func (e *Emulator) createContentLocked(s *Snapshot, parent *Snapshot) error {
	f, err := os.Create(e.snapPath(s.ID))
	if err != nil {
		return fmt.Errorf("create snapshot content: %w", err)
	}
	defer f.Close()
	if err := f.Truncate(s.VolumeSize * gib); err != nil {
		os.Remove(e.snapPath(s.ID))
		return fmt.Errorf("create snapshot content: %w", err)
	}
	if parent != nil {
		maps.Copy(s.Blocks, parent.Blocks)
	}
	return nil
}

// copySnapshotLocked duplicates a completed snapshot (CopyImage, an import
// of an EBS snapshot), sharing its blocks.
func (e *Emulator) copySnapshotLocked(src *Snapshot, desc string) (*Snapshot, error) {
	c := &Snapshot{ID: newID("snap"), Description: desc, State: "completed", Progress: "100%",
		Started: e.clock.Now().UTC(), VolumeSize: src.VolumeSize, SourceSize: src.SourceSize, SHA256: src.SHA256,
		Encrypted: src.Encrypted, KmsKeyID: src.KmsKeyID, Blocks: map[int32]string{}, CopiedFrom: src.ID}
	if err := e.createContentLocked(c, src); err != nil {
		return nil, err
	}
	e.st.Snapshots[c.ID] = c
	return c, nil
}

// ebsStateLocked is s's state, moving a pending EBS direct snapshot to
// error once its timeout passed without a write, as EBS cancels it.
func (e *Emulator) ebsStateLocked(s *Snapshot) string {
	if s.State == "pending" && s.TimeoutMinutes > 0 {
		last := s.Started
		if s.LastWrite.After(last) {
			last = s.LastWrite
		}
		if e.clock.Now().After(last.Add(time.Duration(s.TimeoutMinutes) * time.Minute)) {
			s.State = "error"
		}
	}
	return s.State
}

func (e *Emulator) writeStartSnapshot(w http.ResponseWriter, s *Snapshot) {
	tags := []ebsTag{}
	for _, t := range s.Tags {
		tags = append(tags, ebsTag(t))
	}
	sse := "NONE"
	if s.Encrypted {
		sse = "SSE_KMS"
	}
	out := map[string]any{
		"SnapshotId": s.ID, "OwnerId": e.cfg.AccountID, "Status": s.State, "StartTime": epoch(s.Started),
		"VolumeSize": s.VolumeSize, "BlockSize": BlockSize, "Tags": tags, "Description": s.Description, "SseType": sse,
	}
	if s.Parent != "" {
		out["ParentSnapshotId"] = s.Parent
	}
	if s.KmsKeyID != "" {
		out["KmsKeyArn"] = s.KmsKeyID
	}
	writeJSON(w, http.StatusCreated, out)
}

func (e *Emulator) putSnapshotBlock(w http.ResponseWriter, r *http.Request, id, index string, data []byte) error {
	idx, err := strconv.ParseInt(index, 10, 32)
	if err != nil || idx < 0 {
		return ebsValidation("INVALID_BLOCK", "block index %q is not a non-negative integer", index)
	}
	if n := r.Header.Get("X-Amz-Data-Length"); n != strconv.Itoa(len(data)) {
		return ebsValidation("INVALID_BLOCK", "x-amz-Data-Length %s does not match the %d bytes sent", n, len(data))
	}
	if len(data) != BlockSize {
		return ebsValidation("INVALID_BLOCK", "block data must be %d bytes, got %d", BlockSize, len(data))
	}
	if alg := r.Header.Get("X-Amz-Checksum-Algorithm"); alg != "SHA256" {
		return ebsValidation("INVALID_PARAMETER_VALUE", "checksum algorithm %q is not SHA256", alg)
	}
	sum := sha256.Sum256(data)
	got := base64.StdEncoding.EncodeToString(sum[:])
	if r.Header.Get("X-Amz-Checksum") != got {
		return ebsValidation("INVALID_BLOCK", "the checksum of block %d does not match its data", idx)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.st.Snapshots[id]
	if !ok {
		return ebsNotFound(id)
	}
	if e.ebsStateLocked(s) != "pending" {
		return ebsValidation("INVALID_SNAPSHOT_ID", "snapshot %s is %s; blocks can only be written to a pending snapshot", id, s.State)
	}
	if idx >= s.VolumeSize*gib/BlockSize {
		return ebsValidation("INVALID_BLOCK", "block index %d is beyond the %d GiB volume", idx, s.VolumeSize)
	}
	f, err := os.OpenFile(e.snapPath(id), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(data, idx*BlockSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write block %d of %s: %w", idx, id, err)
	}
	if s.Checksums == nil {
		s.Checksums = map[int32]string{}
	}
	if _, again := s.Checksums[int32(idx)]; !again {
		s.Written++
	}
	s.Checksums[int32(idx)] = got
	s.PutBytes += int64(len(data))
	s.Blocks[int32(idx)] = id
	s.LastWrite = e.clock.Now().UTC()
	if p := r.Header.Get("X-Amz-Progress"); p != "" {
		s.Progress = p + "%"
	}
	e.saveLocked()
	w.Header().Set("X-Amz-Checksum", got)
	w.Header().Set("X-Amz-Checksum-Algorithm", "SHA256")
	writeJSON(w, http.StatusCreated, map[string]any{})
	return nil
}

func (e *Emulator) completeSnapshot(w http.ResponseWriter, r *http.Request, id string) error {
	count, err := strconv.Atoi(r.Header.Get("X-Amz-Changedblockscount"))
	if err != nil || count < 0 {
		return ebsValidation("INVALID_PARAMETER_VALUE", "x-amz-ChangedBlocksCount is required")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s, ok := e.st.Snapshots[id]
	if !ok {
		return ebsNotFound(id)
	}
	if s.State == "completed" {
		writeJSON(w, http.StatusAccepted, map[string]string{"Status": "completed"})
		return nil
	}
	if e.ebsStateLocked(s) != "pending" {
		return ebsValidation("INVALID_SNAPSHOT_ID", "snapshot %s is %s", id, s.State)
	}
	if int(s.Written) != count {
		return ebsValidation("INVALID_PARAMETER_VALUE", "ChangedBlocksCount %d does not match the %d blocks written", count, s.Written)
	}
	if want := r.Header.Get("X-Amz-Checksum"); want != "" {
		if r.Header.Get("X-Amz-Checksum-Aggregation-Method") != "LINEAR" || r.Header.Get("X-Amz-Checksum-Algorithm") != "SHA256" {
			return ebsValidation("INVALID_PARAMETER_VALUE", "only SHA256 checksums aggregated LINEAR are supported")
		}
		idxs := make([]int32, 0, len(s.Checksums))
		for i := range s.Checksums {
			idxs = append(idxs, i)
		}
		sort.Slice(idxs, func(a, b int) bool { return idxs[a] < idxs[b] })
		h := sha256.New()
		for _, i := range idxs {
			raw, _ := base64.StdEncoding.DecodeString(s.Checksums[i])
			h.Write(raw)
		}
		if base64.StdEncoding.EncodeToString(h.Sum(nil)) != want {
			s.State = "error"
			e.saveLocked()
			writeJSON(w, http.StatusAccepted, map[string]string{"Status": "error"})
			return nil
		}
	}
	s.State, s.Progress = "completed", "100%"
	e.saveLocked()
	writeJSON(w, http.StatusAccepted, map[string]string{"Status": "completed"})
	return nil
}

func blockToken(snap string, idx int32) string {
	return base64.RawURLEncoding.EncodeToString([]byte(snap + "/" + strconv.Itoa(int(idx))))
}

// listParams reads maxResults, pageToken and startingBlockIndex.
func listParams(r *http.Request) (start int32, max int, err error) {
	q := r.URL.Query()
	max = 10000
	if v := q.Get("maxResults"); v != "" {
		if max, err = strconv.Atoi(v); err != nil || max < 100 || max > 10000 {
			return 0, 0, ebsValidation("INVALID_PARAMETER_VALUE", "maxResults must be from 100 to 10000")
		}
	}
	if v := q.Get("startingBlockIndex"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return 0, 0, ebsValidation("INVALID_PARAMETER_VALUE", "startingBlockIndex %q is invalid", v)
		}
		start = int32(n)
	}
	if v := q.Get("pageToken"); v != "" {
		n, err := strconv.ParseInt(v, 10, 32)
		if err != nil || n < 0 {
			return 0, 0, ebsValidation("INVALID_PAGE_TOKEN", "the page token is invalid")
		}
		start = max32(start, int32(n))
	}
	return start, max, nil
}

func max32(a, b int32) int32 {
	if a > b {
		return a
	}
	return b
}

func (e *Emulator) completedSnapshotLocked(id string) (*Snapshot, error) {
	s, ok := e.st.Snapshots[id]
	if !ok {
		return nil, ebsNotFound(id)
	}
	if e.ebsStateLocked(s) != "completed" {
		return nil, ebsValidation("INVALID_SNAPSHOT_ID", "snapshot %s is %s, not completed", id, s.State)
	}
	return s, nil
}

func (e *Emulator) listSnapshotBlocks(w http.ResponseWriter, r *http.Request, id string) error {
	start, max, err := listParams(r)
	if err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s, err := e.completedSnapshotLocked(id)
	if err != nil {
		return err
	}
	idxs := sortedBlocks(s.Blocks, nil, start)
	type block struct {
		BlockIndex int32  `json:"BlockIndex"`
		BlockToken string `json:"BlockToken"`
	}
	out := map[string]any{"VolumeSize": s.VolumeSize, "BlockSize": BlockSize, "ExpiryTime": epoch(e.clock.Now().Add(time.Hour))}
	blocks := []block{}
	for i, idx := range idxs {
		if i == max {
			out["NextToken"] = strconv.Itoa(int(idx))
			break
		}
		blocks = append(blocks, block{idx, blockToken(id, idx)})
	}
	out["Blocks"] = blocks
	writeJSON(w, http.StatusOK, out)
	return nil
}

// sortedBlocks returns the indexes ≥ start present in a or b, ascending.
func sortedBlocks(a, b map[int32]string, start int32) []int32 {
	seen := map[int32]bool{}
	for i := range a {
		if i >= start {
			seen[i] = true
		}
	}
	for i := range b {
		if i >= start {
			seen[i] = true
		}
	}
	out := make([]int32, 0, len(seen))
	for i := range seen {
		out = append(out, i)
	}
	sort.Slice(out, func(x, y int) bool { return out[x] < out[y] })
	return out
}

func (e *Emulator) listChangedBlocks(w http.ResponseWriter, r *http.Request, second string) error {
	start, max, err := listParams(r)
	if err != nil {
		return err
	}
	first := r.URL.Query().Get("firstSnapshotId")
	e.mu.Lock()
	defer e.mu.Unlock()
	s2, err := e.completedSnapshotLocked(second)
	if err != nil {
		return err
	}
	var firstBlocks map[int32]string
	if first != "" {
		s1, err := e.completedSnapshotLocked(first)
		if err != nil {
			return err
		}
		if s1.VolumeSize > s2.VolumeSize {
			return ebsValidation("UNRELATED_SNAPSHOTS", "snapshot %s is larger than %s", first, second)
		}
		firstBlocks = s1.Blocks
	}
	type changed struct {
		BlockIndex       int32  `json:"BlockIndex"`
		FirstBlockToken  string `json:"FirstBlockToken,omitempty"`
		SecondBlockToken string `json:"SecondBlockToken,omitempty"`
	}
	out := map[string]any{"VolumeSize": s2.VolumeSize, "BlockSize": BlockSize, "ExpiryTime": epoch(e.clock.Now().Add(time.Hour))}
	list := []changed{}
	for _, idx := range sortedBlocks(s2.Blocks, firstBlocks, start) {
		w1, in1 := firstBlocks[idx]
		w2, in2 := s2.Blocks[idx]
		if in1 && in2 && w1 == w2 {
			continue
		}
		if len(list) == max {
			out["NextToken"] = strconv.Itoa(int(idx))
			break
		}
		c := changed{BlockIndex: idx}
		if in1 {
			c.FirstBlockToken = blockToken(first, idx)
		}
		if in2 {
			c.SecondBlockToken = blockToken(second, idx)
		}
		list = append(list, c)
	}
	out["ChangedBlocks"] = list
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (e *Emulator) getSnapshotBlock(w http.ResponseWriter, r *http.Request, id, index string) error {
	idx, err := strconv.ParseInt(index, 10, 32)
	if err != nil || idx < 0 {
		return ebsValidation("INVALID_BLOCK", "block index %q is not a non-negative integer", index)
	}
	if r.URL.Query().Get("blockToken") != blockToken(id, int32(idx)) {
		return ebsValidation("INVALID_BLOCK_TOKEN", "the block token is not valid for block %d of %s", idx, id)
	}
	e.mu.Lock()
	s, err := e.completedSnapshotLocked(id)
	var content *blockReader
	sum := ""
	if err == nil {
		writer, ok := s.Blocks[int32(idx)]
		if !ok {
			err = ebsValidation("INVALID_BLOCK", "block %d of %s holds no data", idx, id)
		} else {
			content = e.contentLocked(s)
			// The checksum recorded when the block was put, not one of what
			// is stored now: EBS answers what it kept.
			if ws := e.st.Snapshots[writer]; ws != nil {
				sum = ws.Checksums[int32(idx)]
			} else {
				sum = e.st.Retained[writer][int32(idx)]
			}
		}
	}
	e.mu.Unlock()
	if err != nil {
		return err
	}
	defer content.Close()
	data := make([]byte, BlockSize)
	if _, err := content.ReadAt(data, idx*BlockSize); err != nil && err != io.EOF {
		return fmt.Errorf("read block %d of %s: %w", idx, id, err)
	}
	if sum == "" {
		// A block an import wrote: no checksum was sent with it.
		h := sha256.Sum256(data)
		sum = base64.StdEncoding.EncodeToString(h[:])
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Amz-Data-Length", strconv.Itoa(BlockSize))
	w.Header().Set("X-Amz-Checksum", sum)
	w.Header().Set("X-Amz-Checksum-Algorithm", "SHA256")
	w.WriteHeader(http.StatusOK)
	io.Copy(w, bytes.NewReader(data))
	return nil
}
