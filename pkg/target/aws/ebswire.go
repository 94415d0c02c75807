package aws

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/aws/smithy-go"
)

// EBSAPI is EBS direct as the target uses it (ebs.go), one method per
// operation of its REST API. Errors carry EBS's error codes in the SDK's
// shapes (smithy.APIError), as the other clients' do.
type EBSAPI interface {
	// StartSnapshot starts a pending snapshot of in.VolumeGiB GiB, a child
	// of in.Parent when set, encrypted as in says, tagged, idempotent
	// through in.ClientToken, and returns it as EBS describes it.
	StartSnapshot(ctx context.Context, in ReplicaInput) (Replica, error)
	// PutSnapshotBlock stores length bytes read from data as block index
	// of pending snapshot id; checksum is their base64 SHA-256, which EBS
	// verifies. data is streamed, not held.
	PutSnapshotBlock(ctx context.Context, id string, index int64, data io.Reader, length int64, checksum string) error
	// CompleteSnapshot seals pending snapshot id after changed blocks
	// were put; aggregate is the base64 SHA-256 of their checksums in
	// block order ("" when none was put). It returns the snapshot's status
	// (completed, pending, error).
	CompleteSnapshot(ctx context.Context, id string, changed int64, aggregate string) (string, error)
	// ListSnapshotBlocks returns a page of at most max blocks of
	// completed snapshot id holding data, from index start on, and the
	// token of the next page ("" after the last); token "" asks for the
	// first.
	ListSnapshotBlocks(ctx context.Context, id string, start int64, max int, token string) ([]Block, string, error)
	// ListChangedBlocks returns a page of at most max blocks of completed
	// snapshot second that differ from first (every block holding data
	// when first is ""), each with second's token ("" when only first
	// holds it), and the next page's token as ListSnapshotBlocks does.
	ListChangedBlocks(ctx context.Context, first, second string, max int, token string) ([]Block, string, error)
	// GetSnapshotBlock opens block b of completed snapshot id: its data
	// (for the caller to read and close), their length and the checksum
	// EBS holds for them.
	GetSnapshotBlock(ctx context.Context, id string, b Block) (data io.ReadCloser, length int64, checksum string, err error)
}

// ebsClient is EBS direct over its REST-JSON protocol (wire.go).
type ebsClient struct{ w *wire }

// do sends one operation; body is JSON-encoded unless it is an io.Reader,
// which is streamed (length bytes) unsigned, as EBS takes block data.
func (c ebsClient) do(ctx context.Context, op, method, path string, query url.Values, header http.Header,
	body any, length int64) (*http.Response, error) {
	if header == nil {
		header = http.Header{}
	}
	var r io.Reader
	hash := unsignedHash
	switch b := body.(type) {
	case nil:
		sum := sha256.Sum256(nil)
		hash = hex.EncodeToString(sum[:])
	case io.Reader:
		r = b
		header.Set("Content-Type", "application/octet-stream")
		header.Set("Content-Length", strconv.FormatInt(length, 10))
	default:
		js, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(js)
		r, hash = bytes.NewReader(js), hex.EncodeToString(sum[:])
		header.Set("Content-Type", "application/json")
	}
	resp, err := c.w.send(ctx, method, path, query, header, r, hash, jsonError)
	if err != nil {
		return nil, &smithy.OperationError{ServiceID: c.w.service, OperationName: op, Err: err}
	}
	return resp, nil
}

// call sends one operation and decodes its JSON answer into out.
func (c ebsClient) call(ctx context.Context, op, method, path string, query url.Values, header http.Header, in, out any) error {
	resp, err := c.do(ctx, op, method, path, query, header, in, 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return &smithy.OperationError{ServiceID: c.w.service, OperationName: op, Err: fmt.Errorf("decode the answer: %w", err)}
	}
	return nil
}

func snapshotPath(id string, rest ...string) string {
	p := "/snapshots/" + url.PathEscape(id)
	for _, r := range rest {
		p += "/" + url.PathEscape(r)
	}
	return p
}

func (c ebsClient) StartSnapshot(ctx context.Context, in ReplicaInput) (Replica, error) {
	type tag struct{ Key, Value string }
	req := struct {
		VolumeSize       int64
		ParentSnapshotId string `json:",omitempty"`
		Tags             []tag  `json:",omitempty"`
		Description      string `json:",omitempty"`
		ClientToken      string
		Encrypted        bool   `json:",omitempty"`
		KmsKeyArn        string `json:",omitempty"`
		Timeout          int
	}{VolumeSize: in.VolumeGiB, ParentSnapshotId: in.Parent, Description: in.Description, ClientToken: in.ClientToken,
		Encrypted: in.Encrypted, KmsKeyArn: in.KMSKeyID, Timeout: 24 * 60}
	for _, k := range slices.Sorted(maps.Keys(in.Tags)) {
		req.Tags = append(req.Tags, tag{k, in.Tags[k]})
	}
	var out struct {
		SnapshotId, ParentSnapshotId string
		VolumeSize                   int64
	}
	if err := c.call(ctx, "StartSnapshot", http.MethodPost, "/snapshots", nil, nil, req, &out); err != nil {
		return Replica{}, err
	}
	return Replica{SnapshotID: out.SnapshotId, VolumeGiB: out.VolumeSize, Parent: out.ParentSnapshotId}, nil
}

func (c ebsClient) PutSnapshotBlock(ctx context.Context, id string, index int64, data io.Reader, length int64, checksum string) error {
	h := http.Header{"X-Amz-Data-Length": {strconv.FormatInt(length, 10)}, "X-Amz-Checksum": {checksum},
		"X-Amz-Checksum-Algorithm": {"SHA256"}}
	resp, err := c.do(ctx, "PutSnapshotBlock", http.MethodPut, snapshotPath(id, "blocks", strconv.FormatInt(index, 10)), nil, h, data, length)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	return resp.Body.Close()
}

func (c ebsClient) CompleteSnapshot(ctx context.Context, id string, changed int64, aggregate string) (string, error) {
	h := http.Header{"X-Amz-Changedblockscount": {strconv.FormatInt(changed, 10)}}
	if aggregate != "" {
		h.Set("X-Amz-Checksum", aggregate)
		h.Set("X-Amz-Checksum-Algorithm", "SHA256")
		h.Set("X-Amz-Checksum-Aggregation-Method", "LINEAR")
	}
	var out struct{ Status string }
	err := c.call(ctx, "CompleteSnapshot", http.MethodPost, "/snapshots/completion/"+url.PathEscape(id), nil, h, nil, &out)
	return out.Status, err
}

// blockPage is a page of ListSnapshotBlocks or ListChangedBlocks.
type blockPage struct {
	Blocks []struct {
		BlockIndex int64
		BlockToken string
	}
	ChangedBlocks []struct {
		BlockIndex       int64
		SecondBlockToken string
	}
	NextToken string
}

func pageQuery(max int, token string) url.Values {
	q := url.Values{"maxResults": {strconv.Itoa(max)}}
	if token != "" {
		q.Set("pageToken", token)
	}
	return q
}

func (c ebsClient) ListSnapshotBlocks(ctx context.Context, id string, start int64, max int, token string) ([]Block, string, error) {
	q := pageQuery(max, token)
	if start > 0 {
		q.Set("startingBlockIndex", strconv.FormatInt(start, 10))
	}
	var out blockPage
	if err := c.call(ctx, "ListSnapshotBlocks", http.MethodGet, snapshotPath(id, "blocks"), q, nil, nil, &out); err != nil {
		return nil, "", err
	}
	page := make([]Block, 0, len(out.Blocks))
	for _, b := range out.Blocks {
		page = append(page, Block{Index: b.BlockIndex, Token: b.BlockToken})
	}
	return page, out.NextToken, nil
}

func (c ebsClient) ListChangedBlocks(ctx context.Context, first, second string, max int, token string) ([]Block, string, error) {
	q := pageQuery(max, token)
	if first != "" {
		q.Set("firstSnapshotId", first)
	}
	var out blockPage
	if err := c.call(ctx, "ListChangedBlocks", http.MethodGet, snapshotPath(second, "changedblocks"), q, nil, nil, &out); err != nil {
		return nil, "", err
	}
	page := make([]Block, 0, len(out.ChangedBlocks))
	for _, b := range out.ChangedBlocks {
		page = append(page, Block{Index: b.BlockIndex, Token: b.SecondBlockToken})
	}
	return page, out.NextToken, nil
}

func (c ebsClient) GetSnapshotBlock(ctx context.Context, id string, b Block) (io.ReadCloser, int64, string, error) {
	resp, err := c.do(ctx, "GetSnapshotBlock", http.MethodGet, snapshotPath(id, "blocks", strconv.FormatInt(b.Index, 10)),
		url.Values{"blockToken": {b.Token}}, nil, nil, 0)
	if err != nil {
		return nil, 0, "", err
	}
	n, err := strconv.ParseInt(resp.Header.Get("X-Amz-Data-Length"), 10, 64)
	if err != nil {
		resp.Body.Close()
		return nil, 0, "", &smithy.OperationError{ServiceID: c.w.service, OperationName: "GetSnapshotBlock",
			Err: fmt.Errorf("the answer's x-amz-Data-Length %q: %w", resp.Header.Get("X-Amz-Data-Length"), err)}
	}
	return resp.Body, n, resp.Header.Get("X-Amz-Checksum"), nil
}
