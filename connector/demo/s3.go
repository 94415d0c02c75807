package demo

import (
	"context"
	"fmt"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func listKeys(ctx context.Context, cl *s3.Client, bucket string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(cl, &s3.ListObjectsV2Input{Bucket: sdk.String(bucket)})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list objects of %s: %w", bucket, err)
		}
		for _, o := range out.Contents {
			keys = append(keys, sdk.ToString(o.Key))
		}
	}
	return keys, nil
}

func listUploads(ctx context.Context, cl *s3.Client, bucket string) ([]string, error) {
	var ups []string
	in := &s3.ListMultipartUploadsInput{Bucket: sdk.String(bucket)}
	for {
		out, err := cl.ListMultipartUploads(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("list multipart uploads of %s: %w", bucket, err)
		}
		for _, u := range out.Uploads {
			ups = append(ups, sdk.ToString(u.Key)+"#"+sdk.ToString(u.UploadId))
		}
		if !sdk.ToBool(out.IsTruncated) {
			return ups, nil
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
}
