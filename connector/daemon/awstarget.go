package daemon

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/rehost/rehost/connector/replication"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// awsTarget binds the run's Target to pkg/target/aws.
type awsTarget struct {
	t    *awstarget.Target
	mode awstarget.ImportMode
}

var _ replication.Target = (*awsTarget)(nil)

func (a *awsTarget) Stage(ctx context.Context, in replication.StageRequest) (replication.Staged, error) {
	var resume *awstarget.Upload
	if len(in.Resume) > 0 && string(in.Resume) != "null" {
		resume = new(awstarget.Upload)
		if err := json.Unmarshal(in.Resume, resume); err != nil {
			return replication.Staged{}, fmt.Errorf("read the recorded upload: %w", err)
		}
		if resume.UploadID == "" {
			resume = nil
		}
	}
	obj, err := a.t.Stage(ctx, awstarget.StageInput{
		Key:        in.Key,
		Body:       in.Body,
		SizeHint:   in.SizeHint,
		Format:     in.Format,
		Resume:     resume,
		OnProgress: in.Progress,
		OnPart: func(u awstarget.Upload) {
			if in.Checkpoint != nil {
				b, _ := json.Marshal(u)
				in.Checkpoint(b)
			}
		},
		// The run owns the upload: it resumes it after a restart or aborts
		// it when it undoes itself.
		KeepOnFailure: true,
	})
	if err != nil {
		return replication.Staged{}, err
	}
	return replication.Staged{Bucket: obj.Bucket, Key: obj.Key, Size: obj.Size, Format: obj.Format, Reused: obj.Reused}, nil
}

func (a *awsTarget) AbortUploads(ctx context.Context, prefix string) (int, error) {
	return a.t.AbortUploads(ctx, prefix)
}

func (a *awsTarget) DeleteStaged(ctx context.Context, prefix string) (int, error) {
	return a.t.DeleteStaged(ctx, prefix)
}

func (a *awsTarget) StartImport(ctx context.Context, in replication.ImportRequest) (json.RawMessage, error) {
	disks := make([]awstarget.Object, len(in.Disks))
	for i, d := range in.Disks {
		disks[i] = awstarget.Object{Bucket: d.Bucket, Key: d.Key, Size: d.Size, Format: d.Format}
	}
	imp, err := a.t.StartImport(ctx, awstarget.ImportInput{
		Disks:       disks,
		LicenseType: in.LicenseType,
		BootMode:    in.BootMode,
		Platform:    in.Platform,
		Encrypted:   in.Encrypted,
		KMSKeyID:    in.KMSKeyID,
		RoleName:    in.RoleName,
		ClientToken: in.ClientToken,
		Description: in.Description,
		Tags:        in.Tags,
		Mode:        a.mode,
	})
	if err != nil {
		return nil, err
	}
	return json.Marshal(imp)
}

func decodeImport(ref json.RawMessage) (awstarget.Import, error) {
	var imp awstarget.Import
	if err := json.Unmarshal(ref, &imp); err != nil {
		return imp, fmt.Errorf("read the recorded import: %w", err)
	}
	return imp, nil
}

func (a *awsTarget) WaitImport(ctx context.Context, ref json.RawMessage, progress func(int, string)) (replication.ImportResult, error) {
	imp, err := decodeImport(ref)
	if err != nil {
		return replication.ImportResult{}, err
	}
	res, err := a.t.Wait(ctx, imp, func(st awstarget.ImportStatus) {
		if progress != nil {
			progress(st.Progress, st.StatusMessage)
		}
	})
	if err != nil {
		return replication.ImportResult{}, fmt.Errorf("VM Import: %w", err)
	}
	return replication.ImportResult{ImageID: res.ImageID, SnapshotIDs: res.SnapshotIDs}, nil
}

func (a *awsTarget) CancelImport(ctx context.Context, ref json.RawMessage) (replication.ImportResult, error) {
	imp, err := decodeImport(ref)
	if err != nil {
		return replication.ImportResult{}, err
	}
	if err := a.t.CancelImport(ctx, imp); err != nil {
		return replication.ImportResult{}, err
	}
	// A task that completed before the cancel reached it made an image the
	// caller must delete.
	st, err := a.t.Status(ctx, imp)
	if err != nil {
		return replication.ImportResult{}, fmt.Errorf("read the cancelled import's state: %w", err)
	}
	if st.Status != "completed" && st.Status != "registering" {
		return replication.ImportResult{}, nil
	}
	res, err := a.t.Wait(ctx, imp, nil)
	if err != nil {
		return replication.ImportResult{}, err
	}
	return replication.ImportResult{ImageID: res.ImageID, SnapshotIDs: res.SnapshotIDs}, nil
}

func (a *awsTarget) FindImports(ctx context.Context, tagKey, tagValue string) ([]json.RawMessage, error) {
	imps, err := a.t.FindImports(ctx, awstarget.FindImportsInput{TagKey: tagKey, TagValue: tagValue})
	if err != nil {
		return nil, err
	}
	out := make([]json.RawMessage, 0, len(imps))
	for _, imp := range imps {
		b, err := json.Marshal(imp)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func (a *awsTarget) Finalize(ctx context.Context, imageID, name string, tags map[string]string) error {
	return a.t.Finalize(ctx, imageID, name, tags)
}

func (a *awsTarget) DeleteImage(ctx context.Context, imageID string) error {
	return a.t.DeleteImage(ctx, imageID)
}

func (a *awsTarget) Retain(ctx context.Context, tagKey, tagValue string, keep int) ([]string, error) {
	return a.t.Retain(ctx, tagKey, tagValue, keep)
}
