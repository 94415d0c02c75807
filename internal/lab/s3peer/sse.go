package s3peer

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
)

type encryptionConfig struct {
	Rules []struct {
		Default *struct {
			SSEAlgorithm   string
			KMSMasterKeyID string
		} `xml:"ApplyServerSideEncryptionByDefault"`
		BucketKeyEnabled bool
	} `xml:"Rule"`
}

// parseEncryption reads a bucket's default encryption.
func parseEncryption(doc []byte) (sseRecord, error) {
	var c encryptionConfig
	if err := xml.Unmarshal(doc, &c); err != nil {
		return sseRecord{}, err
	}
	for _, r := range c.Rules {
		if r.Default == nil {
			continue
		}
		switch r.Default.SSEAlgorithm {
		case "AES256", "aws:kms", "aws:kms:dsse":
			return sseRecord{Algorithm: r.Default.SSEAlgorithm, KMSKeyID: r.Default.KMSMasterKeyID, BucketKey: r.BucketKeyEnabled}, nil
		default:
			return sseRecord{}, fmt.Errorf("SSEAlgorithm %q is not AES256, aws:kms or aws:kms:dsse", r.Default.SSEAlgorithm)
		}
	}
	return sseRecord{}, errors.New("no rule with ApplyServerSideEncryptionByDefault")
}

// sseOps are the answers S3 reports an object's encryption in.
var sseOps = map[string]bool{
	"PutObject": true, "CopyObject": true, "GetObject": true, "HeadObject": true,
	"CreateMultipartUpload": true, "UploadPart": true, "CompleteMultipartUpload": true,
}

// modifyResponse records the encryption requested for an object or an
// upload, and reports an object's encryption as S3 does.
func (f *Front) modifyResponse(resp *http.Response) error {
	info, _ := resp.Request.Context().Value(ctxKey{}).(*forwarded)
	if info == nil || resp.StatusCode/100 != 2 {
		return nil
	}
	obj := info.bucket + "/" + info.key
	f.mu.Lock()
	defer f.mu.Unlock()
	switch info.op {
	case "PutObject", "CopyObject":
		if info.sse != nil {
			f.st.Objects[obj] = *info.sse
		} else {
			delete(f.st.Objects, obj)
		}
		f.saveLocked()
	case "CreateMultipartUpload":
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		if err != nil {
			return err
		}
		var out struct{ UploadId string }
		if xml.Unmarshal(body, &out) == nil && out.UploadId != "" && info.sse != nil {
			f.st.Uploads[out.UploadId] = *info.sse
			f.saveLocked()
		}
	case "CompleteMultipartUpload":
		if rec, ok := f.st.Uploads[info.uploadID]; ok {
			f.st.Objects[obj] = rec
		} else {
			delete(f.st.Objects, obj)
		}
		delete(f.st.Uploads, info.uploadID)
		f.saveLocked()
	case "AbortMultipartUpload":
		delete(f.st.Uploads, info.uploadID)
		f.saveLocked()
	case "DeleteObject":
		delete(f.st.Objects, obj)
		f.saveLocked()
	}
	if !sseOps[info.op] {
		return nil
	}
	rec, ok := f.st.Objects[obj]
	if info.op == "UploadPart" || info.op == "CreateMultipartUpload" {
		rec, ok = f.st.Uploads[info.uploadID]
		if info.sse != nil {
			rec, ok = *info.sse, true
		}
	}
	if !ok {
		if enc, err := parseEncryption(f.st.Config[info.bucket][SubEncryption]); err == nil {
			rec, ok = enc, true
		}
	}
	if ok {
		h := resp.Header
		h.Set("X-Amz-Server-Side-Encryption", rec.Algorithm)
		if rec.KMSKeyID != "" {
			h.Set("X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id", rec.KMSKeyID)
		}
		if rec.BucketKey {
			h.Set("X-Amz-Server-Side-Encryption-Bucket-Key-Enabled", "true")
		}
	}
	return nil
}
