package aws

import (
	"encoding/json"
	"strings"
)

// ImportRoleName is the service role VM Import assumes by default.
const ImportRoleName = "vmimport"

// denyInsecureSid names the bucket policy statement Setup manages.
const denyInsecureSid = "RehostDenyInsecureTransport"

type policyDoc struct {
	Version   string `json:"Version"`
	Statement []any  `json:"Statement"`
}

type statement struct {
	Sid       string         `json:"Sid,omitempty"`
	Effect    string         `json:"Effect"`
	Principal any            `json:"Principal,omitempty"`
	Action    any            `json:"Action"`
	Resource  any            `json:"Resource"`
	Condition map[string]any `json:"Condition,omitempty"`
}

type trustStatement struct {
	Effect    string         `json:"Effect"`
	Principal map[string]any `json:"Principal"`
	Action    string         `json:"Action"`
	Condition map[string]any `json:"Condition"`
}

// PolicyDocuments returns the vmimport role's trust policy and its
// least-privilege inline policy for a staging bucket (and a KMS key ARN when
// staged objects or imported snapshots are encrypted with one), as indented
// JSON an administrator can apply by hand. ARNs use the "aws" partition.
func PolicyDocuments(bucket, kmsKey string) (trust, policy string) {
	return policyDocuments("aws", bucket, kmsKey)
}

func policyDocuments(partition, bucket, kmsKey string) (trust, policy string) {
	t := policyDoc{Version: "2012-10-17", Statement: []any{trustStatement{
		Effect:    "Allow",
		Principal: map[string]any{"Service": "vmie.amazonaws.com"},
		Action:    "sts:AssumeRole",
		Condition: map[string]any{"StringEquals": map[string]string{"sts:ExternalId": "vmimport"}},
	}}}
	bucketARN := "arn:" + partition + ":s3:::" + bucket
	p := policyDoc{Version: "2012-10-17", Statement: []any{
		statement{
			Sid:      "ReadStagingBucket",
			Effect:   "Allow",
			Action:   []string{"s3:GetBucketLocation", "s3:GetObject", "s3:ListBucket"},
			Resource: []string{bucketARN, bucketARN + "/*"},
		},
		statement{
			Sid:      "ImportIntoEC2",
			Effect:   "Allow",
			Action:   []string{"ec2:ModifySnapshotAttribute", "ec2:CopySnapshot", "ec2:RegisterImage", "ec2:Describe*"},
			Resource: "*",
		},
	}}
	if kmsKey != "" {
		p.Statement = append(p.Statement, statement{
			Sid:    "UseImportKey",
			Effect: "Allow",
			Action: []string{"kms:CreateGrant", "kms:Decrypt", "kms:DescribeKey", "kms:Encrypt",
				"kms:GenerateDataKey*", "kms:ReEncrypt*"},
			Resource: kmsKey,
		})
	}
	return indentJSON(t), indentJSON(p)
}

// bucketPolicyStatement denies every S3 action on the bucket and its objects
// over plain HTTP.
func bucketPolicyStatement(partition, bucket string) statement {
	arn := "arn:" + partition + ":s3:::" + bucket
	return statement{
		Sid:       denyInsecureSid,
		Effect:    "Deny",
		Principal: "*",
		Action:    "s3:*",
		Resource:  []string{arn, arn + "/*"},
		Condition: map[string]any{"Bool": map[string]string{"aws:SecureTransport": "false"}},
	}
}

// BucketPolicy is the staging bucket policy Setup applies to a bucket with
// no policy of its own.
func BucketPolicy(bucket string) string {
	return indentJSON(policyDoc{Version: "2012-10-17", Statement: []any{bucketPolicyStatement("aws", bucket)}})
}

func indentJSON(v any) string {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // static shapes: cannot fail
	}
	return string(b) + "\n"
}

// asList reads a policy element that may be a string or a list of strings.
func asList(v any) []string {
	switch x := v.(type) {
	case string:
		return []string{x}
	case []any:
		var out []string
		for _, e := range x {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if strings.EqualFold(e, s) {
			return true
		}
	}
	return false
}

// deniesInsecure reports whether a parsed bucket policy statement denies all
// of S3 over non-TLS on both the bucket and its objects.
func deniesInsecure(st map[string]any, bucketARN string) bool {
	if e, _ := st["Effect"].(string); e != "Deny" {
		return false
	}
	acts := asList(st["Action"])
	if !contains(acts, "s3:*") && !contains(acts, "*") {
		return false
	}
	res := asList(st["Resource"])
	if !(contains(res, bucketARN) || contains(res, "*")) || !(contains(res, bucketARN+"/*") || contains(res, "*")) {
		return false
	}
	cond, _ := st["Condition"].(map[string]any)
	b, _ := cond["Bool"].(map[string]any)
	for k, v := range b {
		if strings.EqualFold(k, "aws:SecureTransport") {
			switch x := v.(type) {
			case string:
				return strings.EqualFold(x, "false")
			case bool:
				return !x
			case []any:
				return len(x) == 1 && strings.EqualFold(asList(x)[0], "false")
			}
		}
	}
	return false
}

// sameJSON reports whether two JSON documents are equal as values.
func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}
