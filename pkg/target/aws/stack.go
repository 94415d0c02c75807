package aws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rehost/rehost/pkg/retry"
)

// MaxTemplateBody is CloudFormation's limit on a template passed in the
// request (TemplateBody).
const MaxTemplateBody = 51200

// ErrNoUpdates is UpdateStack's answer when the stack already is what is
// asked.
var ErrNoUpdates = errors.New("no updates are to be performed")

// StackInput creates or updates a stack.
type StackInput struct {
	Name       string
	Template   string
	Parameters map[string]string
	Tags       map[string]string
	// Token makes the call idempotent (CloudFormation's
	// ClientRequestToken): a repeated create with it finds the stack.
	Token string
}

// Stack is a CloudFormation stack as DescribeStacks reports it.
type Stack struct {
	ID, Name, Status, StatusReason string
	Outputs                        map[string]string
}

// StackEvent is one event of a stack, as DescribeStackEvents reports it.
type StackEvent struct {
	Time                  time.Time
	LogicalID, PhysicalID string
	Type, Status, Reason  string
}

// StackResource is one resource of a stack.
type StackResource struct {
	LogicalID, PhysicalID, Type, Status, Reason string
}

func (t *Target) cfn() (QueryAPI, error) {
	if t.cf == nil {
		return nil, errors.New("no CloudFormation client configured")
	}
	return t.cf, nil
}

// stackQuery is the parameters of a stack's CreateStack, UpdateStack or
// CreateChangeSet; tokenKey names the idempotency token's parameter.
func stackQuery(in StackInput, tokenKey string) url.Values {
	q := url.Values{"StackName": {in.Name}, "TemplateBody": {in.Template}}
	for i, k := range slices.Sorted(maps.Keys(in.Parameters)) {
		n := "Parameters.member." + strconv.Itoa(i+1) + "."
		q.Set(n+"ParameterKey", k)
		q.Set(n+"ParameterValue", in.Parameters[k])
	}
	for i, k := range slices.Sorted(maps.Keys(in.Tags)) {
		n := "Tags.member." + strconv.Itoa(i+1) + "."
		q.Set(n+"Key", k)
		q.Set(n+"Value", in.Tags[k])
	}
	if in.Token != "" {
		q.Set(tokenKey, in.Token)
	}
	return q
}

// ValidateTemplate asks CloudFormation whether body is a valid template;
// the error carries CloudFormation's words.
func (t *Target) ValidateTemplate(ctx context.Context, body string) error {
	cf, err := t.cfn()
	if err != nil {
		return err
	}
	return t.call(ctx, "ValidateTemplate", func(ctx context.Context) error {
		return cf.Query(ctx, "ValidateTemplate", url.Values{"TemplateBody": {body}}, nil)
	})
}

// CreateStack creates a stack and returns its id. With the same Token, a
// repeated call returns the stack the first one made.
func (t *Target) CreateStack(ctx context.Context, in StackInput) (string, error) {
	cf, err := t.cfn()
	if err != nil {
		return "", err
	}
	var out struct{ StackId string }
	err = t.call(ctx, "CreateStack", func(ctx context.Context) error {
		return cf.Query(ctx, "CreateStack", stackQuery(in, "ClientRequestToken"), &out)
	})
	if err != nil {
		return "", fmt.Errorf("create stack %s: %w", in.Name, err)
	}
	return out.StackId, nil
}

// UpdateStack updates a stack; ErrNoUpdates when nothing would change.
func (t *Target) UpdateStack(ctx context.Context, in StackInput) error {
	cf, err := t.cfn()
	if err != nil {
		return err
	}
	err = t.call(ctx, "UpdateStack", func(ctx context.Context) error {
		return cf.Query(ctx, "UpdateStack", stackQuery(in, "ClientRequestToken"), nil)
	})
	if err != nil && strings.Contains(apiMessage(err), "No updates are to be performed") {
		return ErrNoUpdates
	}
	if err != nil {
		return fmt.Errorf("update stack %s: %w", in.Name, err)
	}
	return nil
}

// DeleteStack starts deleting a stack (by name or id). Deleting a stack
// that does not exist succeeds, as in CloudFormation.
func (t *Target) DeleteStack(ctx context.Context, name, token string) error {
	cf, err := t.cfn()
	if err != nil {
		return err
	}
	q := url.Values{"StackName": {name}}
	if token != "" {
		q.Set("ClientRequestToken", token)
	}
	err = t.call(ctx, "DeleteStack", func(ctx context.Context) error {
		return cf.Query(ctx, "DeleteStack", q, nil)
	})
	if err != nil {
		return fmt.Errorf("delete stack %s: %w", name, err)
	}
	return nil
}

// DescribeStack returns the stack named (or with the id) name, or nil when
// it does not exist. A deleted stack is found by its id only.
func (t *Target) DescribeStack(ctx context.Context, name string) (*Stack, error) {
	cf, err := t.cfn()
	if err != nil {
		return nil, err
	}
	var out struct {
		Stacks []struct {
			StackId, StackName, StackStatus, StackStatusReason string
			Outputs                                            []struct{ OutputKey, OutputValue string } `xml:"Outputs>member"`
		} `xml:"Stacks>member"`
	}
	err = t.call(ctx, "DescribeStacks", func(ctx context.Context) error {
		return cf.Query(ctx, "DescribeStacks", url.Values{"StackName": {name}}, &out)
	})
	if err != nil && apiCode(err) == "ValidationError" && strings.Contains(apiMessage(err), "does not exist") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("describe stack %s: %w", name, err)
	}
	if len(out.Stacks) == 0 {
		return nil, nil
	}
	s := out.Stacks[0]
	st := &Stack{ID: s.StackId, Name: s.StackName, Status: s.StackStatus, StatusReason: s.StackStatusReason, Outputs: map[string]string{}}
	for _, o := range s.Outputs {
		st.Outputs[o.OutputKey] = o.OutputValue
	}
	return st, nil
}

// StackEvents lists a stack's events, oldest first.
func (t *Target) StackEvents(ctx context.Context, name string) ([]StackEvent, error) {
	cf, err := t.cfn()
	if err != nil {
		return nil, err
	}
	var evs []StackEvent
	for token := ""; ; {
		q := url.Values{"StackName": {name}}
		if token != "" {
			q.Set("NextToken", token)
		}
		var page struct {
			StackEvents []struct {
				Timestamp                                                                                 time.Time
				LogicalResourceId, PhysicalResourceId, ResourceType, ResourceStatus, ResourceStatusReason string
			} `xml:"StackEvents>member"`
			NextToken string
		}
		if err := t.call(ctx, "DescribeStackEvents", func(ctx context.Context) error {
			return cf.Query(ctx, "DescribeStackEvents", q, &page)
		}); err != nil {
			return nil, fmt.Errorf("events of stack %s: %w", name, err)
		}
		for _, e := range page.StackEvents {
			evs = append(evs, StackEvent{Time: e.Timestamp, LogicalID: e.LogicalResourceId, PhysicalID: e.PhysicalResourceId,
				Type: e.ResourceType, Status: e.ResourceStatus, Reason: e.ResourceStatusReason})
		}
		// A token repeated would page forever.
		if page.NextToken == "" || page.NextToken == token {
			break
		}
		token = page.NextToken
	}
	slices.Reverse(evs)
	return evs, nil
}

// StackResources lists a stack's resources.
func (t *Target) StackResources(ctx context.Context, name string) ([]StackResource, error) {
	cf, err := t.cfn()
	if err != nil {
		return nil, err
	}
	var out struct {
		StackResources []struct {
			LogicalResourceId, PhysicalResourceId, ResourceType, ResourceStatus, ResourceStatusReason string
		} `xml:"StackResources>member"`
	}
	if err := t.call(ctx, "DescribeStackResources", func(ctx context.Context) error {
		return cf.Query(ctx, "DescribeStackResources", url.Values{"StackName": {name}}, &out)
	}); err != nil {
		return nil, fmt.Errorf("resources of stack %s: %w", name, err)
	}
	var rs []StackResource
	for _, r := range out.StackResources {
		rs = append(rs, StackResource{LogicalID: r.LogicalResourceId, PhysicalID: r.PhysicalResourceId,
			Type: r.ResourceType, Status: r.ResourceStatus, Reason: r.ResourceStatusReason})
	}
	return rs, nil
}

// Change is one change a change set would make.
type Change struct {
	Action, LogicalID, PhysicalID, Type, Replacement string
}

// ChangeSet is a change set once CloudFormation worked it out.
type ChangeSet struct {
	ID, Name, Status, StatusReason string
	Changes                        []Change
}

// CreateChangeSet asks CloudFormation what updating the stack to in would
// change, and waits until it has worked it out (a change set without
// changes comes back FAILED with CloudFormation's reason).
func (t *Target) CreateChangeSet(ctx context.Context, in StackInput, changeSet string) (ChangeSet, error) {
	cf, err := t.cfn()
	if err != nil {
		return ChangeSet{}, err
	}
	q := stackQuery(in, "ClientToken")
	q.Set("ChangeSetName", changeSet)
	var created struct{ Id string }
	err = t.call(ctx, "CreateChangeSet", func(ctx context.Context) error {
		return cf.Query(ctx, "CreateChangeSet", q, &created)
	})
	if err != nil {
		return ChangeSet{}, fmt.Errorf("create change set %s of stack %s: %w", changeSet, in.Name, err)
	}
	id := created.Id
	pending := retry.Policy{Attempts: 60, Base: 200 * time.Millisecond, Max: 5 * time.Second, Classify: func(err error) (bool, time.Duration) { return errors.Is(err, errPending), 0 }}
	var cs ChangeSet
	err = pending.Do(ctx, func(ctx context.Context) error {
		var out struct {
			Status, StatusReason string
			Changes              []struct {
				ResourceChange *struct {
					Action, LogicalResourceId, PhysicalResourceId, ResourceType, Replacement string
				}
			} `xml:"Changes>member"`
		}
		if err := t.call(ctx, "DescribeChangeSet", func(ctx context.Context) error {
			return cf.Query(ctx, "DescribeChangeSet", url.Values{"ChangeSetName": {id}, "StackName": {in.Name}}, &out)
		}); err != nil {
			return err
		}
		cs = ChangeSet{ID: id, Name: changeSet, Status: out.Status, StatusReason: out.StatusReason}
		if out.Status == "CREATE_PENDING" || out.Status == "CREATE_IN_PROGRESS" {
			return errPending
		}
		for _, c := range out.Changes {
			if rc := c.ResourceChange; rc != nil {
				cs.Changes = append(cs.Changes, Change{Action: rc.Action, LogicalID: rc.LogicalResourceId,
					PhysicalID: rc.PhysicalResourceId, Type: rc.ResourceType, Replacement: rc.Replacement})
			}
		}
		return nil
	})
	if err != nil {
		return cs, fmt.Errorf("describe change set %s of stack %s: %w", changeSet, in.Name, err)
	}
	return cs, nil
}

var errPending = errors.New("still being worked out")

// Signal is what a wait condition handle takes.
type Signal struct {
	Status   string `json:"Status"` // SUCCESS or FAILURE
	Reason   string `json:"Reason"`
	UniqueID string `json:"UniqueId"`
	Data     string `json:"Data"`
}

// SignalWaitCondition PUTs a signal to a wait condition handle's URL (a
// presigned URL CloudFormation made). Signals with the same UniqueID
// replace each other, so repeating one is harmless.
func (t *Target) SignalWaitCondition(ctx context.Context, url string, body []byte) error {
	client := t.cfg.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	return t.call(ctx, "SignalWaitCondition", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		// A presigned URL's signature covers an empty content type.
		req.Header.Set("Content-Type", "")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode/100 != 2 {
			return &httpStatusError{status: resp.StatusCode, msg: fmt.Sprintf("signal wait condition: %s: %s", resp.Status, strings.TrimSpace(string(msg)))}
		}
		return nil
	})
}

type httpStatusError struct {
	status int
	msg    string
}

func (e *httpStatusError) Error() string   { return e.msg }
func (e *httpStatusError) HTTPStatus() int { return e.status }

// PutObject stores a small object (a template) in the staging bucket,
// encrypted as staged disks are.
func (t *Target) PutObject(ctx context.Context, key string, body []byte, contentType string) (bucket string, err error) {
	bucket, err = t.bucket()
	if err != nil {
		return "", err
	}
	sse, kms, bk := t.sse()
	err = t.call(ctx, "PutObject", func(ctx context.Context) error {
		_, err := t.s3.PutObject(ctx, &s3.PutObjectInput{Bucket: sdk.String(bucket), Key: sdk.String(key), Body: bytes.NewReader(body),
			ContentType: sdk.String(contentType), ServerSideEncryption: sse, SSEKMSKeyId: kms, BucketKeyEnabled: bk})
		return err
	})
	if err != nil {
		return "", fmt.Errorf("put s3://%s/%s: %w", bucket, key, err)
	}
	return bucket, nil
}

// GetObject reads a small object (user data, a configure script) of at
// most limit bytes.
func (t *Target) GetObject(ctx context.Context, bucket, key string, limit int64) ([]byte, error) {
	var body []byte
	err := t.call(ctx, "GetObject", func(ctx context.Context) error {
		out, err := t.s3.GetObject(ctx, &s3.GetObjectInput{Bucket: sdk.String(bucket), Key: sdk.String(key)})
		if err != nil {
			return err
		}
		defer out.Body.Close()
		body, err = io.ReadAll(io.LimitReader(out.Body, limit+1))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("get s3://%s/%s: %w", bucket, key, err)
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("get s3://%s/%s: larger than %d bytes", bucket, key, limit)
	}
	return body, nil
}
