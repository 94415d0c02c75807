package aws

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/rehost/rehost/pkg/awsregion"
)

func TestDeniesInsecure(t *testing.T) {
	const arn = "arn:aws:s3:::b"
	cases := []struct {
		doc  string
		want bool
	}{
		{`{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`, true},
		{`{"Effect":"Deny","Principal":"*","Action":["s3:*"],"Resource":"*","Condition":{"Bool":{"aws:securetransport":false}}}`, true},
		{`{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::b/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`, false},
		{`{"Effect":"Deny","Principal":"*","Action":"s3:GetObject","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"],"Condition":{"Bool":{"aws:SecureTransport":"false"}}}`, false},
		{`{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"],"Condition":{"Bool":{"aws:SecureTransport":"true"}}}`, false},
		{`{"Effect":"Deny","Principal":"*","Action":"s3:*","Resource":["arn:aws:s3:::b","arn:aws:s3:::b/*"]}`, false},
	}
	for i, c := range cases {
		var st map[string]any
		if err := json.Unmarshal([]byte(c.doc), &st); err != nil {
			t.Fatal(err)
		}
		if got := deniesInsecure(st, arn); got != c.want {
			t.Errorf("case %d: got %v, want %v", i, got, c.want)
		}
	}
	var st map[string]any
	b, _ := json.Marshal(bucketPolicyStatement("aws", "b"))
	json.Unmarshal(b, &st)
	if !deniesInsecure(st, arn) {
		t.Fatal("the statement Setup writes does not pass its own check")
	}
}

func TestLifecycleCoverage(t *testing.T) {
	for _, c := range []struct {
		r    types.LifecycleRule
		want bool
	}{
		{types.LifecycleRule{Filter: &types.LifecycleRuleFilter{Prefix: sdk.String("")}}, true},
		{types.LifecycleRule{Filter: &types.LifecycleRuleFilter{Prefix: sdk.String("rehost/")}}, true},
		{types.LifecycleRule{Filter: &types.LifecycleRuleFilter{Prefix: sdk.String("rehost/job")}}, false},
		{types.LifecycleRule{Filter: &types.LifecycleRuleFilter{Tag: &types.Tag{Key: sdk.String("a"), Value: sdk.String("b")}}}, false},
		{types.LifecycleRule{Prefix: sdk.String("reh")}, true},
	} {
		if got := coversPrefix(c.r, "rehost/"); got != c.want {
			t.Errorf("%+v: got %v", c.r.Filter, got)
		}
	}
	if !sameKey("arn:aws:kms:us-east-1:1:key/abc", "abc") || sameKey("arn:aws:kms:us-east-1:1:key/abc", "abd") {
		t.Fatal("sameKey")
	}
	if awsregion.Partition("cn-north-1") != "aws-cn" || awsregion.Partition("us-gov-west-1") != "aws-us-gov" || awsregion.Partition("eu-west-1") != "aws" {
		t.Fatal("partitionOf")
	}
	if !trustsVMIE(`{"Statement":[{"Effect":"Allow","Principal":{"Service":["vmie.amazonaws.com"]},"Action":"sts:AssumeRole"}]}`) ||
		trustsVMIE(`{"Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`) {
		t.Fatal("trustsVMIE")
	}
}

func respErr(status int, code string) error {
	var err error = &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: status}}, Err: errors.New("x")}
	if code != "" {
		err = fmt.Errorf("op: %w", &wrapped{api: &smithy.GenericAPIError{Code: code, Message: "m"}, resp: err})
	}
	return err
}

// wrapped carries an API error inside a response error, as the SDK's
// OperationError does.
type wrapped struct {
	api  error
	resp error
}

func (w *wrapped) Error() string   { return w.api.Error() }
func (w *wrapped) Unwrap() []error { return []error{w.api, w.resp} }

func TestTransient(t *testing.T) {
	// A request that could not be sent carries a response error of status 0
	// around the connection error, as the SDK reports it.
	send := &smithyhttp.RequestSendError{Err: &net.OpError{Op: "write", Err: syscall.ECONNRESET}}
	sendFailure := fmt.Errorf("operation error S3: UploadPart: %w", &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{}}, Err: send})
	for _, c := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{&smithy.GenericAPIError{Code: "SlowDown"}, true},
		{&smithy.GenericAPIError{Code: "InternalError"}, true},
		{&smithy.GenericAPIError{Code: "AccessDenied"}, false},
		{&smithy.GenericAPIError{Code: "NoSuchUpload"}, false},
		{&smithy.GenericAPIError{Code: "UnauthorizedOperation"}, false},
		{respErr(503, ""), true},
		{respErr(429, ""), true},
		{respErr(500, "InternalError"), true},
		{respErr(501, "NotImplemented"), false},
		{respErr(501, ""), false},
		{respErr(400, "ThrottlingException"), true},
		{respErr(400, "RequestLimitExceeded"), true},
		{respErr(403, "AccessDenied"), false},
		{respErr(400, "InvalidParameterValue"), false},
		{respErr(404, "NoSuchKey"), false},
		{respErr(400, "ValidationError"), false},
		{sendFailure, true},
		{fmt.Errorf("send: %w", syscall.ECONNRESET), true},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		{&checksumError{part: 1}, true},
		{context.Canceled, false},
		{errors.New("invalid input"), false},
	} {
		if got := transient(c.err); got != c.want {
			t.Errorf("transient(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
