package emulator

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"

	"github.com/rehost/rehost/internal/lab/guestdisk"
)

func (e *env) cfn() *cloudformation.Client {
	ak, sk := e.em.Credentials()
	cfg := aws.Config{Region: e.em.Region(), Credentials: credentials.NewStaticCredentialsProvider(ak, sk, ""), RetryMaxAttempts: 1}
	return cloudformation.NewFromConfig(cfg, func(o *cloudformation.Options) { o.BaseEndpoint = aws.String(e.url) })
}

// waitStack polls the stack until it settles.
func (e *env) waitStack(cf *cloudformation.Client, name string) cfntypes.Stack {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := cf.DescribeStacks(context.Background(), &cloudformation.DescribeStacksInput{StackName: aws.String(name)})
		if err != nil {
			e.t.Fatalf("describe stack %s: %v", name, err)
		}
		st := out.Stacks[0]
		if !strings.HasSuffix(string(st.StackStatus), "_IN_PROGRESS") {
			return st
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("stack %s still %s", name, st.StackStatus)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func events(t *testing.T, cf *cloudformation.Client, name string) []cfntypes.StackEvent {
	t.Helper()
	var out []cfntypes.StackEvent
	p := cloudformation.NewDescribeStackEventsPaginator(cf, &cloudformation.DescribeStackEventsInput{StackName: aws.String(name)})
	for p.HasMorePages() {
		page, err := p.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, page.StackEvents...)
	}
	slices.Reverse(out) // oldest first
	return out
}

// eventIndex is the position of the first event of logical in status.
func eventIndex(evs []cfntypes.StackEvent, logical string, status cfntypes.ResourceStatus) int {
	return slices.IndexFunc(evs, func(ev cfntypes.StackEvent) bool {
		return aws.ToString(ev.LogicalResourceId) == logical && ev.ResourceStatus == status
	})
}

func resources(t *testing.T, cf *cloudformation.Client, name string) map[string]cfntypes.StackResource {
	t.Helper()
	out, err := cf.DescribeStackResources(context.Background(), &cloudformation.DescribeStackResourcesInput{StackName: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]cfntypes.StackResource{}
	for _, r := range out.StackResources {
		m[aws.ToString(r.LogicalResourceId)] = r
	}
	return m
}

func signal(t *testing.T, url, status, id string) {
	t.Helper()
	body := fmt.Sprintf(`{"Status":%q,"Reason":"from the test","UniqueId":%q,"Data":"ready"}`, status, id)
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader([]byte(body)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("signal %s: %s", url, resp.Status)
	}
}

// appTemplate is two tiers: Web starts once Db signalled its wait
// condition.
const appTemplate = `{
  "AWSTemplateFormatVersion": "2010-09-09",
  "Description": "two tiers",
  "Parameters": {
    "Ami": {"Type": "AWS::EC2::Image::Id"},
    "WebType": {"Type": "String", "Default": "t3.micro"},
    "Suffix": {"Type": "String", "Default": ""}
  },
  "Conditions": {"Named": {"Fn::Not": [{"Fn::Equals": [{"Ref": "Suffix"}, ""]}]}},
  "Resources": {
    "DbHandle": {"Type": "AWS::CloudFormation::WaitConditionHandle"},
    "Db": {"Type": "AWS::EC2::Instance", "Properties": {"ImageId": {"Ref": "Ami"}, "InstanceType": "t3.small",
      "Tags": [{"Key": "Name", "Value": {"Fn::Join": ["", ["db", {"Fn::If": ["Named", {"Ref": "Suffix"}, {"Ref": "AWS::NoValue"}]}]]}}]}},
    "DbReady": {"Type": "AWS::CloudFormation::WaitCondition", "DependsOn": "Db",
      "Properties": {"Handle": {"Ref": "DbHandle"}, "Timeout": "30", "Count": 1}},
    "Web": {"Type": "AWS::EC2::Instance", "DependsOn": ["DbReady"], "Properties": {"ImageId": {"Ref": "Ami"},
      "InstanceType": {"Ref": "WebType"}, "UserData": {"Fn::Base64": {"Fn::Sub": "DB=${Db.PrivateIp}"}}}}
  },
  "Outputs": {
    "DbIp": {"Value": {"Fn::GetAtt": ["Db", "PrivateIp"]}},
    "WebId": {"Value": {"Ref": "Web"}},
    "Ready": {"Value": {"Fn::GetAtt": ["DbReady", "Data"]}}
  }
}`

// A stack makes its resources in dependency order: the second tier starts
// only after the first signalled its wait condition; an update replaces
// what changed and cleans the old up; deleting the stack terminates its
// instances.
func TestStackLaunchesInOrder(t *testing.T) {
	e := newEnv(t, withBootTime)
	cf := e.cfn()
	ctx := context.Background()
	ami := e.snapshotAMI("linux", guestDisk(t, guestdisk.BIOS))

	v, err := cf.ValidateTemplate(ctx, &cloudformation.ValidateTemplateInput{TemplateBody: aws.String(appTemplate)})
	if err != nil || len(v.Parameters) != 3 || aws.ToString(v.Description) != "two tiers" {
		t.Fatalf("validate: %v %+v", err, v)
	}
	params := []cfntypes.Parameter{{ParameterKey: aws.String("Ami"), ParameterValue: aws.String(ami)}, {ParameterKey: aws.String("Suffix"), ParameterValue: aws.String("-t")}}
	cs, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("shop"), TemplateBody: aws.String(appTemplate),
		Parameters: params, ClientRequestToken: aws.String("launch-1"), Tags: []cfntypes.Tag{{Key: aws.String("rehost:app"), Value: aws.String("app-1")}}})
	if err != nil {
		t.Fatal(err)
	}
	again, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("shop"), TemplateBody: aws.String(appTemplate),
		Parameters: params, ClientRequestToken: aws.String("launch-1")})
	if err != nil || aws.ToString(again.StackId) != aws.ToString(cs.StackId) {
		t.Fatalf("the same client token: %v %v", err, again)
	}
	_, err = cf.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("shop"), TemplateBody: aws.String(appTemplate), Parameters: params})
	wantCode(t, err, "AlreadyExistsException")

	// Db runs and the wait condition holds Web back.
	var handle string
	for deadline := time.Now().Add(10 * time.Second); ; {
		rs := resources(t, cf, "shop")
		if rs["DbReady"].ResourceStatus == cfntypes.ResourceStatusCreateInProgress {
			handle = aws.ToString(rs["DbHandle"].PhysicalResourceId)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no wait condition in progress: %+v", rs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if _, started := resources(t, cf, "shop")["Web"]; started {
		t.Fatal("Web started before Db signalled")
	}
	signal(t, handle, "SUCCESS", "Db")
	st := e.waitStack(cf, "shop")
	if st.StackStatus != cfntypes.StackStatusCreateComplete {
		t.Fatalf("stack %s: %s", st.StackStatus, aws.ToString(st.StackStatusReason))
	}
	evs := events(t, cf, "shop")
	if i, j := eventIndex(evs, "DbReady", cfntypes.ResourceStatusCreateComplete), eventIndex(evs, "Web", cfntypes.ResourceStatusCreateInProgress); i < 0 || j < i {
		t.Errorf("Web began (event %d) before DbReady completed (event %d)", j, i)
	}
	outs := map[string]string{}
	for _, o := range st.Outputs {
		outs[aws.ToString(o.OutputKey)] = aws.ToString(o.OutputValue)
	}
	rs := resources(t, cf, "shop")
	db, web := e.instance(aws.ToString(rs["Db"].PhysicalResourceId)), e.instance(aws.ToString(rs["Web"].PhysicalResourceId))
	if outs["DbIp"] != aws.ToString(db.PrivateIpAddress) || outs["WebId"] != aws.ToString(web.InstanceId) || outs["Ready"] != `{"Db":"ready"}` {
		t.Errorf("outputs %v", outs)
	}
	tags := map[string]string{}
	for _, tg := range db.Tags {
		tags[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	if tags["Name"] != "db-t" || tags["rehost:app"] != "app-1" || tags["aws:cloudformation:logical-id"] != "Db" || tags["aws:cloudformation:stack-name"] != "shop" {
		t.Errorf("db tags %v", tags)
	}
	if web.InstanceType != "t3.micro" {
		t.Errorf("web type %s", web.InstanceType)
	}

	// A change set shows the replacement; executing it replaces Web only.
	params = append(params, cfntypes.Parameter{ParameterKey: aws.String("WebType"), ParameterValue: aws.String("m5.large")})
	ccs, err := cf.CreateChangeSet(ctx, &cloudformation.CreateChangeSetInput{StackName: aws.String("shop"), ChangeSetName: aws.String("bigger"),
		UsePreviousTemplate: aws.Bool(true), Parameters: params})
	if err != nil {
		t.Fatal(err)
	}
	d, err := cf.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{ChangeSetName: ccs.Id})
	if err != nil || d.Status != cfntypes.ChangeSetStatusCreateComplete || len(d.Changes) != 1 {
		t.Fatalf("change set: %v %+v", err, d)
	}
	if c := d.Changes[0].ResourceChange; aws.ToString(c.LogicalResourceId) != "Web" || c.Action != cfntypes.ChangeActionModify || c.Replacement != cfntypes.ReplacementTrue {
		t.Errorf("change %+v", c)
	}
	same, err := cf.CreateChangeSet(ctx, &cloudformation.CreateChangeSetInput{StackName: aws.String("shop"), ChangeSetName: aws.String("same"),
		UsePreviousTemplate: aws.Bool(true), Parameters: params[:2]})
	if err != nil {
		t.Fatal(err)
	}
	if d, _ := cf.DescribeChangeSet(ctx, &cloudformation.DescribeChangeSetInput{ChangeSetName: same.Id}); d.Status != cfntypes.ChangeSetStatusFailed ||
		!strings.Contains(aws.ToString(d.StatusReason), "didn't contain changes") {
		t.Errorf("a change set without changes: %+v", d)
	}
	if _, err := cf.ExecuteChangeSet(ctx, &cloudformation.ExecuteChangeSetInput{ChangeSetName: ccs.Id}); err != nil {
		t.Fatal(err)
	}
	if st := e.waitStack(cf, "shop"); st.StackStatus != cfntypes.StackStatusUpdateComplete {
		t.Fatalf("after the change set: %s %s", st.StackStatus, aws.ToString(st.StackStatusReason))
	}
	rs2 := resources(t, cf, "shop")
	if rs2["Db"].PhysicalResourceId == nil || *rs2["Db"].PhysicalResourceId != *rs["Db"].PhysicalResourceId || *rs2["Web"].PhysicalResourceId == *rs["Web"].PhysicalResourceId {
		t.Errorf("update replaced the wrong resources: before %v, after %v", rs, rs2)
	}
	if e.instance(aws.ToString(rs2["Web"].PhysicalResourceId)).InstanceType != "m5.large" {
		t.Error("the replacement has the old type")
	}
	time.Sleep(bootTime / 2)
	if st := e.instance(aws.ToString(rs["Web"].PhysicalResourceId)).State.Name; st != "terminated" {
		t.Errorf("the replaced instance is %s", st)
	}
	_, err = cf.UpdateStack(ctx, &cloudformation.UpdateStackInput{StackName: aws.String("shop"), UsePreviousTemplate: aws.Bool(true), Parameters: params})
	if err == nil || !strings.Contains(err.Error(), "No updates are to be performed") {
		t.Errorf("an update without changes: %v", err)
	}

	if _, err := cf.DeleteStack(ctx, &cloudformation.DeleteStackInput{StackName: aws.String("shop")}); err != nil {
		t.Fatal(err)
	}
	if st := e.waitStack(cf, aws.ToString(cs.StackId)); st.StackStatus != cfntypes.StackStatusDeleteComplete {
		t.Fatalf("after delete: %s", st.StackStatus)
	}
	time.Sleep(bootTime / 2)
	for _, in := range e.em.Instances() {
		if in.State != "terminated" {
			t.Errorf("instance %s is %s after the stack was deleted", in.ID, in.State)
		}
	}
	_, err = cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: aws.String("shop")})
	wantCode(t, err, "ValidationError")
}

// A resource that fails fails the stack the way CloudFormation does: the
// resource's reason in its event, the rest rolled back, ROLLBACK_COMPLETE.
// A failed update rolls back to what stood.
func TestStackRollsBack(t *testing.T) {
	e := newEnv(t, withBootTime)
	cf := e.cfn()
	ctx := context.Background()
	ami := e.snapshotAMI("linux", guestDisk(t, guestdisk.BIOS))
	bad := strings.Replace(appTemplate, `"InstanceType": {"Ref": "WebType"}`, `"InstanceType": "m9.huge"`, 1)
	params := []cfntypes.Parameter{{ParameterKey: aws.String("Ami"), ParameterValue: aws.String(ami)}}
	if _, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("bad"), TemplateBody: aws.String(bad), Parameters: params}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if h := resources(t, cf, "bad")["DbHandle"]; h.ResourceStatus == cfntypes.ResourceStatusCreateComplete {
			signal(t, aws.ToString(h.PhysicalResourceId), "SUCCESS", "Db")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no handle")
		}
	}
	if st := e.waitStack(cf, "bad"); st.StackStatus != cfntypes.StackStatusRollbackComplete {
		t.Fatalf("stack %s: %s", st.StackStatus, aws.ToString(st.StackStatusReason))
	}
	evs := events(t, cf, "bad")
	if i := eventIndex(evs, "bad", cfntypes.ResourceStatusRollbackInProgress); i < 0 ||
		aws.ToString(evs[i].ResourceStatusReason) != "The following resource(s) failed to create: [Web]. Rollback requested by user." {
		t.Errorf("the stack's rollback event: %+v", evs)
	}
	i := eventIndex(evs, "Web", cfntypes.ResourceStatusCreateFailed)
	if i < 0 || !strings.Contains(aws.ToString(evs[i].ResourceStatusReason), "Invalid value 'm9.huge' for InstanceType") {
		t.Fatalf("no CREATE_FAILED event with EC2's reason: %+v", evs)
	}
	if eventIndex(evs, "Db", cfntypes.ResourceStatusDeleteComplete) < i {
		t.Error("Db was not deleted by the rollback")
	}
	time.Sleep(bootTime / 2)
	for _, in := range e.em.Instances() {
		if in.State != "terminated" {
			t.Errorf("instance %s is %s after the rollback", in.ID, in.State)
		}
	}
	_, err := cf.UpdateStack(ctx, &cloudformation.UpdateStackInput{StackName: aws.String("bad"), UsePreviousTemplate: aws.Bool(true), Parameters: params})
	if err == nil || !strings.Contains(err.Error(), "ROLLBACK_COMPLETE state and can not be updated") {
		t.Errorf("update of a rolled back stack: %v", err)
	}

	// A FAILURE signal fails the wait condition with the signaller's reason.
	if _, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("nosignal"), TemplateBody: aws.String(appTemplate), Parameters: params}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if h := resources(t, cf, "nosignal")["DbHandle"]; h.ResourceStatus == cfntypes.ResourceStatusCreateComplete {
			signal(t, aws.ToString(h.PhysicalResourceId), "FAILURE", "Db")
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no handle")
		}
	}
	e.waitStack(cf, "nosignal")
	evs = events(t, cf, "nosignal")
	if i := eventIndex(evs, "DbReady", cfntypes.ResourceStatusCreateFailed); i < 0 || !strings.Contains(aws.ToString(evs[i].ResourceStatusReason), "WaitCondition received failed message: 'from the test' for uniqueId: Db") {
		t.Errorf("failure signal: %+v", evs)
	}

	// An update that fails leaves the stack as it was.
	one := `{"Parameters": {"Ami": {"Type": "AWS::EC2::Image::Id"}, "Type": {"Type": "String"}},
	  "Resources": {"A": {"Type": "AWS::EC2::Instance", "Properties": {"ImageId": {"Ref": "Ami"}, "InstanceType": {"Ref": "Type"}}}}}`
	p := func(typ string) []cfntypes.Parameter {
		return append(slices.Clone(params), cfntypes.Parameter{ParameterKey: aws.String("Type"), ParameterValue: aws.String(typ)})
	}
	if _, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("one"), TemplateBody: aws.String(one), Parameters: p("t3.micro")}); err != nil {
		t.Fatal(err)
	}
	e.waitStack(cf, "one")
	before := resources(t, cf, "one")["A"]
	if _, err := cf.UpdateStack(ctx, &cloudformation.UpdateStackInput{StackName: aws.String("one"), TemplateBody: aws.String(one), Parameters: p("m9.huge")}); err != nil {
		t.Fatal(err)
	}
	if st := e.waitStack(cf, "one"); st.StackStatus != cfntypes.StackStatusUpdateRollbackComplete {
		t.Fatalf("failed update: %s", st.StackStatus)
	}
	after := resources(t, cf, "one")["A"]
	if aws.ToString(after.PhysicalResourceId) != aws.ToString(before.PhysicalResourceId) || e.instance(aws.ToString(after.PhysicalResourceId)).State.Name != "running" {
		t.Errorf("after the rolled back update: %+v", after)
	}
}

// Templates CloudFormation would refuse are refused before anything is
// made, with CloudFormation's words.
func TestTemplateErrors(t *testing.T) {
	e := newEnv(t, withBootTime)
	cf := e.cfn()
	ctx := context.Background()
	instance := func(extra string) string {
		return `{"Type": "AWS::EC2::Instance", "Properties": {"ImageId": "ami-00000000000000000"` + extra + `}}`
	}
	for _, c := range []struct{ name, body, want string }{
		{"unresolved Ref", `{"Resources": {"A": ` + instance(`, "SubnetId": {"Ref": "Net"}`) + `}}`, "Unresolved resource dependencies [Net] in the Resources block"},
		{"unresolved DependsOn", `{"Resources": {"A": {"Type": "AWS::EC2::Instance", "DependsOn": "B"}}}`, "Unresolved resource dependencies [B]"},
		{"cycle", `{"Resources": {"A": {"Type": "AWS::EC2::Instance", "DependsOn": "B"}, "B": {"Type": "AWS::EC2::Instance", "DependsOn": "A"}}}`, "Circular dependency between resources: [A, B]"},
		{"cycle through GetAtt", `{"Resources": {"A": ` + instance(`, "PrivateIpAddress": {"Fn::GetAtt": ["B", "PrivateIp"]}`) + `, "B": ` + instance(`, "UserData": {"Fn::Sub": "${A.PrivateIp}"}`) + `}}`, "Circular dependency between resources: [A, B]"},
		{"unknown type", `{"Resources": {"A": {"Type": "AWS::EC2::Spaceship"}}}`, "Unrecognized resource types: [AWS::EC2::Spaceship]"},
		{"no resources", `{"Resources": {}}`, "At least one Resources member must be defined"},
		{"bad section", `{"Resource": {}}`, "Invalid template property or properties [Resource]"},
		{"unknown parameter type", `{"Parameters": {"P": {"Type": "Integer"}}, "Resources": {"A": ` + instance("") + `}}`, "Unrecognized parameter type: Integer"},
		{"too large", `{"Description": "` + strings.Repeat("x", maxTemplateBody) + `", "Resources": {}}`, "less than or equal to 51200"},
		{"not JSON", `{"Resources": `, "JSON not well-formed"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := cf.ValidateTemplate(ctx, &cloudformation.ValidateTemplateInput{TemplateBody: aws.String(c.body)})
			wantCode(t, err, "ValidationError")
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %v does not say %q", err, c.want)
			}
			_, err = cf.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("x"), TemplateBody: aws.String(c.body)})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("create stack: %v", err)
			}
		})
	}
	yaml := "Parameters:\n  Ami: {Type: 'AWS::EC2::Image::Id'}\nResources:\n  A:\n    Type: AWS::EC2::Instance\n    Properties:\n      ImageId: !Ref Ami\n      UserData: !Base64 {'Fn::Sub': 'x'}\n"
	if _, err := cf.ValidateTemplate(ctx, &cloudformation.ValidateTemplateInput{TemplateBody: aws.String(yaml)}); err != nil {
		t.Errorf("YAML with short forms: %v", err)
	}
	// Parameters are checked against the template and the account.
	withParams := `{"Parameters": {"Net": {"Type": "AWS::EC2::Subnet::Id"}}, "Resources": {"A": ` + instance(`, "SubnetId": {"Ref": "Net"}`) + `}}`
	for _, c := range []struct {
		params []cfntypes.Parameter
		want   string
	}{
		{nil, "Parameters: [Net] must have values"},
		{[]cfntypes.Parameter{{ParameterKey: aws.String("Net"), ParameterValue: aws.String("subnet-00000000000000000")}}, "Parameter value subnet-00000000000000000 for parameter name Net does not exist"},
		{[]cfntypes.Parameter{{ParameterKey: aws.String("Other"), ParameterValue: aws.String("x")}}, "Parameters: [Other] do not exist in the template"},
	} {
		_, err := cf.CreateStack(ctx, &cloudformation.CreateStackInput{StackName: aws.String("x"), TemplateBody: aws.String(withParams), Parameters: c.params})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("parameters %v: %v, want %q", c.params, err, c.want)
		}
	}
	if out, err := cf.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{}); err != nil || len(out.Stacks) != 0 {
		t.Errorf("refused templates made stacks: %v %+v", err, out)
	}
	if n := len(e.em.Instances()); n != 0 {
		t.Errorf("refused templates made %d instances", n)
	}
}
