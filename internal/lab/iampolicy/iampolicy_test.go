package iampolicy

import (
	"errors"
	"strings"
	"testing"
)

func mustParse(t *testing.T, doc string, kind Kind) *Policy {
	t.Helper()
	p, err := Parse(doc, kind)
	if err != nil {
		t.Fatalf("parse %s: %v", doc, err)
	}
	return p
}

func TestParseRefuses(t *testing.T) {
	for _, c := range []struct {
		name, doc string
		kind      Kind
		want      string
	}{
		{"not json", `{not json`, Identity, "not a JSON object"},
		{"no statement", `{"Version":"2012-10-17"}`, Identity, "no Statement"},
		{"bad version", `{"Version":"2020-01-01","Statement":[]}`, Identity, "Version"},
		{"bad effect", `{"Statement":{"Effect":"Maybe","Action":"s3:*","Resource":"*"}}`, Identity, "neither Allow nor Deny"},
		{"no action", `{"Statement":{"Effect":"Allow","Resource":"*"}}`, Identity, "Action"},
		{"action and notaction", `{"Statement":{"Effect":"Allow","Action":"s3:*","NotAction":"s3:Get*","Resource":"*"}}`, Identity, "exactly one"},
		{"no vendor", `{"Statement":{"Effect":"Allow","Action":"GetObject","Resource":"*"}}`, Identity, "prefixed by its service"},
		{"principal in identity", `{"Statement":{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}}`, Identity, "must not specify a principal"},
		{"identity without resource", `{"Statement":{"Effect":"Allow","Action":"s3:*"}}`, Identity, "Resource"},
		{"resource in trust", `{"Statement":{"Effect":"Allow","Principal":{"Service":"vmie.amazonaws.com"},"Action":"sts:AssumeRole","Resource":"*"}}`, Trust, "prohibited field Resource"},
		{"trust without principal", `{"Statement":{"Effect":"Allow","Action":"sts:AssumeRole"}}`, Trust, "Principal"},
		{"unknown operator", `{"Statement":{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":{"StringEqualsMaybe":{"aws:SourceIp":"x"}}}}`, Identity, "unknown condition operator"},
		{"unknown set", `{"Statement":{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":{"ForSomeValues:StringLike":{"k":"x"}}}}`, Identity, "unknown condition set operator"},
		{"null if exists", `{"Statement":{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":{"NullIfExists":{"k":"true"}}}}`, Identity, "unknown condition operator"},
		{"bad number", `{"Statement":{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":{"NumericLessThan":{"s3:max-keys":"ten"}}}}`, Identity, "invalid value"},
		{"bad ip", `{"Statement":{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/99"}}}}`, Identity, "invalid value"},
		{"unknown element", `{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*","Conditions":{}}}`, Identity, "unknown element"},
		{"unknown principal type", `{"Statement":{"Effect":"Allow","Principal":{"Robot":"x"},"Action":"sts:AssumeRole"}}`, Trust, "unknown principal type"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.doc, c.kind)
			var me *MalformedError
			if !errors.As(err, &me) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a MalformedError containing %q", err, c.want)
			}
		})
	}
}

func TestDenyWinsAndWildcards(t *testing.T) {
	p := mustParse(t, `{"Version":"2012-10-17","Statement":[
		{"Effect":"Allow","Action":"s3:Get*","Resource":"arn:aws:s3:::stage-*/vm-?/*"},
		{"Effect":"Deny","Action":"s3:GetObject","Resource":"arn:aws:s3:::stage-1/vm-9/*"}]}`, Identity)
	for _, c := range []struct {
		action, resource string
		want             Decision
	}{
		{"s3:GetObject", "arn:aws:s3:::stage-1/vm-1/disk/0.vmdk", Allow},
		{"S3:getobject", "arn:aws:s3:::stage-2/vm-3/d", Allow},
		{"s3:GetObject", "arn:aws:s3:::stage-1/vm-10/d", ImplicitDeny},
		{"s3:GetObject", "arn:aws:s3:::stage-1/vm-9/d", ExplicitDeny},
		{"s3:PutObject", "arn:aws:s3:::stage-1/vm-1/d", ImplicitDeny},
		{"s3:GetObject", "arn:aws:s3:::other/vm-1/d", ImplicitDeny},
	} {
		if got := Evaluate(Request{Action: c.action, Resource: c.resource}, p); got != c.want {
			t.Errorf("%s on %s: %v, want %v", c.action, c.resource, got, c.want)
		}
	}
	// A Deny in another document wins too.
	deny := mustParse(t, `{"Statement":{"Effect":"Deny","Action":"*","Resource":"*"}}`, Identity)
	if got := Evaluate(Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::stage-1/vm-1/d"}, p, deny); got != ExplicitDeny {
		t.Errorf("deny in a second document: %v", got)
	}
}

func TestNotElements(t *testing.T) {
	p := mustParse(t, `{"Statement":[
		{"Effect":"Allow","NotAction":"iam:*","Resource":"*"},
		{"Effect":"Deny","Action":"s3:*","NotResource":["arn:aws:s3:::staging","arn:aws:s3:::staging/*"]}]}`, Identity)
	for _, c := range []struct {
		action, resource string
		want             Decision
	}{
		{"ec2:RegisterImage", "*", Allow},
		{"iam:CreateRole", "*", ImplicitDeny},
		{"s3:GetObject", "arn:aws:s3:::staging/k", Allow},
		{"s3:GetObject", "arn:aws:s3:::elsewhere/k", ExplicitDeny},
	} {
		if got := Evaluate(Request{Action: c.action, Resource: c.resource}, p); got != c.want {
			t.Errorf("%s on %s: %v, want %v", c.action, c.resource, got, c.want)
		}
	}
	bucket := mustParse(t, `{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::111122223333:role/vmimport"},"Action":"s3:GetObject","Resource":"arn:aws:s3:::staging/*"}}`, Resource)
	role := Principal{Type: "AWS", ID: "arn:aws:iam::111122223333:role/vmimport"}
	other := Principal{Type: "AWS", ID: "arn:aws:iam::111122223333:user/alice"}
	if Evaluate(Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::staging/k", Principal: role}, bucket) == ExplicitDeny {
		t.Error("NotPrincipal denied the excluded principal")
	}
	if Evaluate(Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::staging/k", Principal: other}, bucket) != ExplicitDeny {
		t.Error("NotPrincipal did not deny another principal")
	}
}

func TestTrustPolicy(t *testing.T) {
	p := mustParse(t, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"vmie.amazonaws.com"},"Action":"sts:AssumeRole","Condition":{"StringEquals":{"sts:Externalid":"vmimport"}}}]}`, Trust)
	req := Request{Action: "sts:AssumeRole", Principal: Principal{Type: "Service", ID: "vmie.amazonaws.com"},
		Context: map[string][]string{"sts:ExternalId": {"vmimport"}}}
	if !Allowed(req, p) {
		t.Fatal("vmie with the external id is refused")
	}
	req.Context = map[string][]string{"sts:ExternalId": {"other"}}
	if Allowed(req, p) {
		t.Fatal("a wrong external id is accepted")
	}
	req.Context = nil
	if Allowed(req, p) {
		t.Fatal("a missing external id is accepted")
	}
	req = Request{Action: "sts:AssumeRole", Principal: Principal{Type: "Service", ID: "ec2.amazonaws.com"}, Context: map[string][]string{"sts:ExternalId": {"vmimport"}}}
	if Allowed(req, p) {
		t.Fatal("another service may assume the role")
	}
	acct := mustParse(t, `{"Statement":{"Effect":"Allow","Principal":{"AWS":"111122223333"},"Action":"sts:AssumeRole"}}`, Trust)
	if !Allowed(Request{Action: "sts:AssumeRole", Principal: Principal{Type: "AWS", ID: "arn:aws:iam::111122223333:user/bob"}}, acct) {
		t.Fatal("an account principal does not cover the account's users")
	}
	if Allowed(Request{Action: "sts:AssumeRole", Principal: Principal{Type: "AWS", ID: "arn:aws:iam::444455556666:user/bob"}}, acct) {
		t.Fatal("an account principal covers another account")
	}
}

func TestConditions(t *testing.T) {
	deny := func(cond string) *Policy {
		return mustParse(t, `{"Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"},{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":`+cond+`}]}`, Identity)
	}
	ctx := func(kv ...string) map[string][]string {
		m := map[string][]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = append(m[kv[i]], kv[i+1])
		}
		return m
	}
	for _, c := range []struct {
		name, cond string
		ctx        map[string][]string
		denied     bool
	}{
		{"insecure transport", `{"Bool":{"aws:SecureTransport":"false"}}`, ctx("aws:SecureTransport", "false"), true},
		{"secure transport", `{"Bool":{"aws:SecureTransport":false}}`, ctx("aws:securetransport", "true"), false},
		{"absent key", `{"Bool":{"aws:SecureTransport":"false"}}`, nil, false},
		{"negated, absent key", `{"StringNotEquals":{"aws:SourceVpc":"vpc-1"}}`, nil, true},
		{"negated, other value", `{"StringNotEquals":{"aws:SourceVpc":"vpc-1"}}`, ctx("aws:SourceVpc", "vpc-2"), true},
		{"negated, same value", `{"StringNotEquals":{"aws:SourceVpc":["vpc-1","vpc-3"]}}`, ctx("aws:SourceVpc", "vpc-3"), false},
		{"if exists, absent", `{"StringEqualsIfExists":{"aws:SourceVpc":"vpc-1"}}`, nil, true},
		{"if exists, present", `{"StringEqualsIfExists":{"aws:SourceVpc":"vpc-1"}}`, ctx("aws:SourceVpc", "vpc-2"), false},
		{"ignore case", `{"StringEqualsIgnoreCase":{"s3:prefix":"REHOST/"}}`, ctx("s3:prefix", "rehost/"), true},
		{"like", `{"StringLike":{"s3:prefix":"rehost/*"}}`, ctx("s3:prefix", "rehost/job"), true},
		{"not like", `{"StringNotLike":{"s3:prefix":"rehost/*"}}`, ctx("s3:prefix", "rehost/job"), false},
		{"numeric", `{"NumericGreaterThan":{"s3:max-keys":"1000"}}`, ctx("s3:max-keys", "1001"), true},
		{"numeric equal", `{"NumericLessThanEquals":{"s3:max-keys":10}}`, ctx("s3:max-keys", "10"), true},
		{"date", `{"DateLessThan":{"aws:CurrentTime":"2026-01-01T00:00:00Z"}}`, ctx("aws:CurrentTime", "2025-12-31T23:00:00Z"), true},
		{"date epoch", `{"DateGreaterThan":{"aws:EpochTime":"1700000000"}}`, ctx("aws:EpochTime", "1600000000"), false},
		{"ip", `{"NotIpAddress":{"aws:SourceIp":["10.0.0.0/8","192.168.1.7"]}}`, ctx("aws:SourceIp", "192.168.1.7"), false},
		{"ip outside", `{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("aws:SourceIp", "127.0.0.1"), true},
		{"arn like", `{"ArnLike":{"aws:SourceArn":"arn:aws:ec2:*:111122223333:*"}}`, ctx("aws:SourceArn", "arn:aws:ec2:us-east-1:111122223333:image/ami-1"), true},
		{"arn not equals", `{"ArnNotEquals":{"aws:SourceArn":"arn:aws:ec2:*:111122223333:*"}}`, ctx("aws:SourceArn", "arn:aws:ec2:us-east-1:444455556666:image/ami-1"), true},
		{"null true", `{"Null":{"aws:TokenIssueTime":"true"}}`, nil, true},
		{"null false", `{"Null":{"aws:TokenIssueTime":"false"}}`, nil, false},
		{"for any value", `{"ForAnyValue:StringEquals":{"aws:TagKeys":["secret"]}}`, ctx("aws:TagKeys", "a", "aws:TagKeys", "secret"), true},
		{"for any value, absent", `{"ForAnyValue:StringEquals":{"aws:TagKeys":["secret"]}}`, nil, false},
		{"for all values", `{"ForAllValues:StringLike":{"aws:TagKeys":["rehost:*"]}}`, ctx("aws:TagKeys", "rehost:job", "aws:TagKeys", "other"), false},
		{"for all values hold", `{"ForAllValues:StringLike":{"aws:TagKeys":["rehost:*"]}}`, ctx("aws:TagKeys", "rehost:job", "aws:TagKeys", "rehost:run"), true},
		{"for all values, absent", `{"ForAllValues:StringLike":{"aws:TagKeys":["rehost:*"]}}`, nil, true},
		{"two keys are ANDed", `{"StringEquals":{"a":"1","b":"2"}}`, ctx("a", "1", "b", "3"), false},
		{"two operators are ANDed", `{"StringEquals":{"a":"1"},"Bool":{"b":"true"}}`, ctx("a", "1", "b", "true"), true},
		{"policy variable", `{"StringNotEquals":{"s3:prefix":"home/${aws:username}/"}}`, ctx("s3:prefix", "home/bob/", "aws:username", "bob"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := Evaluate(Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/k", Context: c.ctx}, deny(c.cond))
			if (got == ExplicitDeny) != c.denied {
				t.Fatalf("decision %v, want denied=%v", got, c.denied)
			}
		})
	}
}

func FuzzParseEvaluate(f *testing.F) {
	f.Add(`{"Statement":{"Effect":"Allow","Action":"*","Resource":"*?*"}}`, "s3:x", "arn", "k", "v")
	f.Add(`{"Statement":[{"Effect":"Deny","Action":"s3:*","Resource":"*","Condition":{"ForAllValues:StringLike":{"k":"${k}*"}}}]}`, "s3:GetObject", "arn:aws:s3:::b/k", "k", "v")
	f.Fuzz(func(t *testing.T, doc, action, resource, key, value string) {
		p, err := Parse(doc, Identity)
		if err != nil {
			return
		}
		Evaluate(Request{Action: action, Resource: resource, Context: map[string][]string{key: {value}}}, p)
	})
}
