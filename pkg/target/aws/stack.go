package aws

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/rehost/rehost/pkg/retry"
)

// CloudFormationAPI is the part of the CloudFormation client application
// launches use.
type CloudFormationAPI interface {
	ValidateTemplate(context.Context, *cloudformation.ValidateTemplateInput, ...func(*cloudformation.Options)) (*cloudformation.ValidateTemplateOutput, error)
	CreateStack(context.Context, *cloudformation.CreateStackInput, ...func(*cloudformation.Options)) (*cloudformation.CreateStackOutput, error)
	UpdateStack(context.Context, *cloudformation.UpdateStackInput, ...func(*cloudformation.Options)) (*cloudformation.UpdateStackOutput, error)
	DeleteStack(context.Context, *cloudformation.DeleteStackInput, ...func(*cloudformation.Options)) (*cloudformation.DeleteStackOutput, error)
	DescribeStacks(context.Context, *cloudformation.DescribeStacksInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStacksOutput, error)
	DescribeStackEvents(context.Context, *cloudformation.DescribeStackEventsInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStackEventsOutput, error)
	DescribeStackResources(context.Context, *cloudformation.DescribeStackResourcesInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeStackResourcesOutput, error)
	CreateChangeSet(context.Context, *cloudformation.CreateChangeSetInput, ...func(*cloudformation.Options)) (*cloudformation.CreateChangeSetOutput, error)
	DescribeChangeSet(context.Context, *cloudformation.DescribeChangeSetInput, ...func(*cloudformation.Options)) (*cloudformation.DescribeChangeSetOutput, error)
}

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

func (t *Target) cfn() (CloudFormationAPI, error) {
	if t.cf == nil {
		return nil, errors.New("no CloudFormation client configured")
	}
	return t.cf, nil
}

func stackParams(m map[string]string) []cfntypes.Parameter {
	var out []cfntypes.Parameter
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, cfntypes.Parameter{ParameterKey: sdk.String(k), ParameterValue: sdk.String(m[k])})
	}
	return out
}

func stackTags(m map[string]string) []cfntypes.Tag {
	var out []cfntypes.Tag
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, cfntypes.Tag{Key: sdk.String(k), Value: sdk.String(m[k])})
	}
	return out
}

// ValidateTemplate asks CloudFormation whether body is a valid template;
// the error carries CloudFormation's words.
func (t *Target) ValidateTemplate(ctx context.Context, body string) error {
	cf, err := t.cfn()
	if err != nil {
		return err
	}
	return t.call(ctx, "ValidateTemplate", func(ctx context.Context) error {
		_, err := cf.ValidateTemplate(ctx, &cloudformation.ValidateTemplateInput{TemplateBody: sdk.String(body)})
		return err
	})
}

// CreateStack creates a stack and returns its id. With the same Token, a
// repeated call returns the stack the first one made.
func (t *Target) CreateStack(ctx context.Context, in StackInput) (string, error) {
	cf, err := t.cfn()
	if err != nil {
		return "", err
	}
	var id string
	err = t.call(ctx, "CreateStack", func(ctx context.Context) error {
		out, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: sdk.String(in.Name), TemplateBody: sdk.String(in.Template),
			Parameters: stackParams(in.Parameters), Tags: stackTags(in.Tags), ClientRequestToken: optString(in.Token)})
		if err == nil {
			id = sdk.ToString(out.StackId)
		}
		return err
	})
	if err != nil {
		return "", fmt.Errorf("create stack %s: %w", in.Name, err)
	}
	return id, nil
}

// UpdateStack updates a stack; ErrNoUpdates when nothing would change.
func (t *Target) UpdateStack(ctx context.Context, in StackInput) error {
	cf, err := t.cfn()
	if err != nil {
		return err
	}
	err = t.call(ctx, "UpdateStack", func(ctx context.Context) error {
		_, err := cf.UpdateStack(ctx, &cloudformation.UpdateStackInput{StackName: sdk.String(in.Name), TemplateBody: sdk.String(in.Template),
			Parameters: stackParams(in.Parameters), Tags: stackTags(in.Tags), ClientRequestToken: optString(in.Token)})
		return err
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
	err = t.call(ctx, "DeleteStack", func(ctx context.Context) error {
		_, err := cf.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: sdk.String(name), ClientRequestToken: optString(token)})
		return err
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
	var out *cloudformation.DescribeStacksOutput
	err = t.call(ctx, "DescribeStacks", func(ctx context.Context) (err error) {
		out, err = cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: sdk.String(name)})
		return err
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
	st := &Stack{ID: sdk.ToString(s.StackId), Name: sdk.ToString(s.StackName), Status: string(s.StackStatus),
		StatusReason: sdk.ToString(s.StackStatusReason), Outputs: map[string]string{}}
	for _, o := range s.Outputs {
		st.Outputs[sdk.ToString(o.OutputKey)] = sdk.ToString(o.OutputValue)
	}
	return st, nil
}

// StackEvents lists a stack's events, oldest first.
func (t *Target) StackEvents(ctx context.Context, name string) ([]StackEvent, error) {
	cf, err := t.cfn()
	if err != nil {
		return nil, err
	}
	var out []StackEvent
	pages := cloudformation.NewDescribeStackEventsPaginator(cf, &cloudformation.DescribeStackEventsInput{StackName: sdk.String(name)})
	for pages.HasMorePages() {
		var page *cloudformation.DescribeStackEventsOutput
		if err := t.call(ctx, "DescribeStackEvents", func(ctx context.Context) (err error) {
			page, err = pages.NextPage(ctx)
			return err
		}); err != nil {
			return nil, fmt.Errorf("events of stack %s: %w", name, err)
		}
		for _, e := range page.StackEvents {
			out = append(out, StackEvent{Time: sdk.ToTime(e.Timestamp), LogicalID: sdk.ToString(e.LogicalResourceId),
				PhysicalID: sdk.ToString(e.PhysicalResourceId), Type: sdk.ToString(e.ResourceType),
				Status: string(e.ResourceStatus), Reason: sdk.ToString(e.ResourceStatusReason)})
		}
	}
	slices.Reverse(out)
	return out, nil
}

// StackResources lists a stack's resources.
func (t *Target) StackResources(ctx context.Context, name string) ([]StackResource, error) {
	cf, err := t.cfn()
	if err != nil {
		return nil, err
	}
	var out *cloudformation.DescribeStackResourcesOutput
	if err := t.call(ctx, "DescribeStackResources", func(ctx context.Context) (err error) {
		out, err = cf.DescribeStackResources(ctx, &cloudformation.DescribeStackResourcesInput{StackName: sdk.String(name)})
		return err
	}); err != nil {
		return nil, fmt.Errorf("resources of stack %s: %w", name, err)
	}
	var rs []StackResource
	for _, r := range out.StackResources {
		rs = append(rs, StackResource{LogicalID: sdk.ToString(r.LogicalResourceId), PhysicalID: sdk.ToString(r.PhysicalResourceId),
			Type: sdk.ToString(r.ResourceType), Status: string(r.ResourceStatus), Reason: sdk.ToString(r.ResourceStatusReason)})
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
	var id string
	err = t.call(ctx, "CreateChangeSet", func(ctx context.Context) error {
		out, err := cf.CreateChangeSet(ctx, &cloudformation.CreateChangeSetInput{StackName: sdk.String(in.Name), ChangeSetName: sdk.String(changeSet),
			TemplateBody: sdk.String(in.Template), Parameters: stackParams(in.Parameters), Tags: stackTags(in.Tags), ClientToken: optString(in.Token)})
		if err == nil {
			id = sdk.ToString(out.Id)
		}
		return err
	})
	if err != nil {
		return ChangeSet{}, fmt.Errorf("create change set %s of stack %s: %w", changeSet, in.Name, err)
	}
	pending := retry.Policy{Attempts: 60, Base: 200 * time.Millisecond, Max: 5 * time.Second, Classify: func(err error) (bool, time.Duration) { return errors.Is(err, errPending), 0 }}
	var cs ChangeSet
	err = pending.Do(ctx, func(ctx context.Context) error {
		var out *cloudformation.DescribeChangeSetOutput
		if err := t.call(ctx, "DescribeChangeSet", func(ctx context.Context) (err error) {
			out, err = cf.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{ChangeSetName: sdk.String(id), StackName: sdk.String(in.Name)})
			return err
		}); err != nil {
			return err
		}
		cs = ChangeSet{ID: id, Name: changeSet, Status: string(out.Status), StatusReason: sdk.ToString(out.StatusReason)}
		if out.Status == cfntypes.ChangeSetStatusCreatePending || out.Status == cfntypes.ChangeSetStatusCreateInProgress {
			return errPending
		}
		for _, c := range out.Changes {
			if rc := c.ResourceChange; rc != nil {
				cs.Changes = append(cs.Changes, Change{Action: string(rc.Action), LogicalID: sdk.ToString(rc.LogicalResourceId),
					PhysicalID: sdk.ToString(rc.PhysicalResourceId), Type: sdk.ToString(rc.ResourceType), Replacement: string(rc.Replacement)})
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
