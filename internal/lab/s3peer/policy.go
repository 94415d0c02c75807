package s3peer

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"

	"github.com/rehost/rehost/internal/lab/iampolicy"
	"github.com/rehost/rehost/pkg/awsregion"
)

// bucketPolicy is a bucket's policy as the front last read it from
// versitygw: nil doc for none, err for one that no longer parses (which
// then denies everything: evaluation fails closed).
type bucketPolicy struct {
	doc *iampolicy.Policy
	err error
}

// s3Actions maps the operations whose IAM action is not "s3:"+operation.
var s3Actions = map[string]string{
	"ListObjects": "s3:ListBucket", "ListObjectsV2": "s3:ListBucket", "HeadBucket": "s3:ListBucket",
	"HeadObject": "s3:GetObject", "CopyObject": "s3:PutObject",
	"CreateMultipartUpload": "s3:PutObject", "UploadPart": "s3:PutObject", "UploadPartCopy": "s3:PutObject",
	"CompleteMultipartUpload": "s3:PutObject", "ListParts": "s3:ListMultipartUploadParts",
	"ListMultipartUploads": "s3:ListBucketMultipartUploads", "DeleteObjects": "s3:DeleteObject",
	"PutBucketEncryption": "s3:PutEncryptionConfiguration", "GetBucketEncryption": "s3:GetEncryptionConfiguration",
	"DeleteBucketEncryption":             "s3:PutEncryptionConfiguration",
	"GetBucketLifecycleConfiguration":    "s3:GetLifecycleConfiguration",
	"PutBucketLifecycleConfiguration":    "s3:PutLifecycleConfiguration",
	"DeleteBucketLifecycleConfiguration": "s3:PutLifecycleConfiguration",
	"PutPublicAccessBlock":               "s3:PutBucketPublicAccessBlock", "GetPublicAccessBlock": "s3:GetBucketPublicAccessBlock",
	"DeletePublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}

// denied evaluates the bucket policy for the request and returns why it is
// refused, or "". Only Deny statements are evaluated: the caller holds the
// account's root keys, which identity policies always allow. The policy
// calls themselves are exempt, as S3 never locks the account root out of
// its bucket's policy.
func (f *Front) denied(r *http.Request, op, bucket, key string) string {
	switch op {
	case "GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy", "CreateBucket":
		return ""
	}
	bp := f.policy(r, bucket)
	if bp == nil {
		return ""
	}
	if bp.err != nil {
		return "the bucket policy cannot be evaluated: " + bp.err.Error()
	}
	action := s3Actions[op]
	if action == "" {
		action = "s3:" + op
	}
	resource := "arn:" + awsregion.Partition(f.region) + ":s3:::" + bucket
	if key != "" {
		resource += "/" + key
	}
	ctx := map[string][]string{"aws:SecureTransport": {strconv.FormatBool(r.TLS != nil)}}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		ctx["aws:SourceIp"] = []string{host}
	}
	req := iampolicy.Request{Action: action, Resource: resource, Context: ctx,
		// The front knows the caller by its access key only: statements
		// naming other principals than "*" do not match it.
		Principal: iampolicy.Principal{Type: "AWS", ID: f.accessKey(r)}}
	if iampolicy.Evaluate(req, bp.doc) == iampolicy.ExplicitDeny {
		return "explicitly denied by the bucket policy"
	}
	return ""
}

func (f *Front) accessKey(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if _, rest, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
		cred = rest
	}
	id, _, _ := strings.Cut(cred, "/")
	return id
}

// policy returns the bucket's policy, reading it from versitygw the first
// time; nil when the bucket has none (or does not exist).
func (f *Front) policy(r *http.Request, bucket string) *bucketPolicy {
	f.mu.Lock()
	bp, ok := f.policies[bucket]
	f.mu.Unlock()
	if ok {
		return bp
	}
	out, err := f.backend.GetBucketPolicy(r.Context(), &s3.GetBucketPolicyInput{Bucket: aws.String(bucket)})
	var ae smithy.APIError
	switch {
	case err == nil && strings.TrimSpace(aws.ToString(out.Policy)) != "":
		doc, perr := iampolicy.Parse(aws.ToString(out.Policy), iampolicy.Resource)
		bp = &bucketPolicy{doc: doc, err: perr}
	case err == nil, errors.As(err, &ae) && (ae.ErrorCode() == "NoSuchBucketPolicy" || ae.ErrorCode() == "NoSuchBucket"):
		bp = nil
	default:
		// versitygw did not answer: do not cache, and do not refuse on a
		// guess; the request itself will meet the same backend.
		return nil
	}
	f.mu.Lock()
	f.policies[bucket] = bp
	f.mu.Unlock()
	return bp
}

func (f *Front) forgetPolicy(bucket string) {
	f.mu.Lock()
	delete(f.policies, bucket)
	f.mu.Unlock()
}

// putPolicy validates a bucket policy as S3 does before versitygw stores
// it: one internal/lab/iampolicy cannot evaluate is refused with MalformedPolicy.
func (f *Front) putPolicy(w http.ResponseWriter, r *http.Request, bucket string) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
	if err != nil {
		writeError(w, http.StatusBadRequest, "IncompleteBody", err.Error(), bucket)
		return
	}
	doc := body
	if strings.Contains(r.Header.Get("Content-Encoding"), "aws-chunked") {
		if doc, err = decodeAWSChunked(body); err != nil {
			writeError(w, http.StatusBadRequest, "InvalidRequest", err.Error(), bucket)
			return
		}
	}
	if _, err := iampolicy.Parse(string(doc), iampolicy.Resource); err != nil {
		if _, verr := f.verifier.Verify(r, body); verr != nil {
			writeAuthError(w, verr, bucket)
			return
		}
		writeError(w, http.StatusBadRequest, "MalformedPolicy", err.Error(), bucket)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	// Forgotten before as well as after: the forward may flush the answer
	// to the client before this handler returns, and the client's next
	// request must not meet the policy cached before this one.
	f.forgetPolicy(bucket)
	defer f.forgetPolicy(bucket)
	f.forward(w, r, "PutBucketPolicy", bucket, "")
}
