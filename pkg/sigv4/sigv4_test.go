package sigv4

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

const (
	akid   = "AKIDEXAMPLE"
	secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
)

var clock = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func verifier(s3mode bool, services ...string) *Verifier {
	return &Verifier{
		Secret: func(id string) (string, bool) {
			if id == akid {
				return secret, true
			}
			return "", false
		},
		Region: "eu-west-1", Services: services, S3: s3mode,
		Now: func() time.Time { return clock },
	}
}

// sign signs a request with the SDK's own signer.
func sign(t *testing.T, r *http.Request, body []byte, region, service string, at time.Time) {
	t.Helper()
	sum := sha256.Sum256(body)
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret},
		r, hex.EncodeToString(sum[:]), service, region, at)
	if err != nil {
		t.Fatal(err)
	}
}

func query(t *testing.T, body string) *http.Request {
	r := httptest.NewRequest("POST", "https://sts.example/", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return r
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func TestVerify(t *testing.T) {
	body := []byte("Action=GetCallerIdentity&Version=2011-06-15")
	tests := []struct {
		name   string
		mutate func(r *http.Request) ([]byte, *http.Request)
		region string
		at     time.Time
		want   Kind
	}{
		{name: "good", want: 0},
		{name: "tampered body", mutate: func(r *http.Request) ([]byte, *http.Request) {
			return []byte("Action=CreateRole&RoleName=x&Version=2010-05-08"), r
		}, want: BadSignature},
		{name: "tampered body with the header claiming its hash", mutate: func(r *http.Request) ([]byte, *http.Request) {
			r.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sha(body)))
			return []byte("Action=CreateRole"), r
		}, want: PayloadMismatch},
		{name: "stale date", at: clock.Add(-16 * time.Minute), want: Skewed},
		{name: "future date", at: clock.Add(16 * time.Minute), want: Skewed},
		{name: "within skew", at: clock.Add(-14 * time.Minute), want: 0},
		{name: "wrong region", region: "us-east-1", want: WrongScope},
		{name: "unknown key", mutate: func(r *http.Request) ([]byte, *http.Request) {
			r.Header.Set("Authorization", strings.Replace(r.Header.Get("Authorization"), akid, "AKIDOTHER", 1))
			return body, r
		}, want: UnknownKey},
		{name: "no auth", mutate: func(r *http.Request) ([]byte, *http.Request) {
			r.Header.Del("Authorization")
			return body, r
		}, want: Missing},
		{name: "unsigned payload outside S3", mutate: func(r *http.Request) ([]byte, *http.Request) {
			r.Header.Set("X-Amz-Content-Sha256", UnsignedPayload)
			return body, r
		}, want: PayloadMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := query(t, string(body))
			at := tc.at
			if at.IsZero() {
				at = clock
			}
			sign(t, r, body, cmp.Or(tc.region, "eu-west-1"), "sts", at)
			b := body
			if tc.mutate != nil {
				b, r = tc.mutate(r)
			}
			cred, err := verifier(false, "sts").Verify(r, b)
			if got := kindOf(err); got != tc.want {
				t.Fatalf("kind %d (%v), want %d", got, err, tc.want)
			}
			if tc.want == 0 && (cred.AccessKeyID != akid || cred.Service != "sts" || cred.Region != "eu-west-1") {
				t.Errorf("credential %+v", cred)
			}
		})
	}
}

// EBS direct's PutSnapshotBlock is signed with UNSIGNED-PAYLOAD: accepted
// only where the server says the operation allows it.
func TestUnsignedPayloadOutsideS3(t *testing.T) {
	body := bytes.Repeat([]byte{7}, 4096)
	r := httptest.NewRequest("PUT", "https://ebs.example/snapshots/snap-1/blocks/3", bytes.NewReader(body))
	r.Header.Set("X-Amz-Content-Sha256", UnsignedPayload)
	err := v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret},
		r, UnsignedPayload, "ebs", "eu-west-1", clock)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := verifier(false, "ebs").Verify(r, body); kindOf(err) != PayloadMismatch {
		t.Fatalf("unsigned payload without the allowance: %v", err)
	}
	v := verifier(false, "ebs")
	v.UnsignedPayload = true
	if _, err := v.Verify(r, body); err != nil {
		t.Fatalf("unsigned payload with the allowance: %v", err)
	}
}

func TestWrongService(t *testing.T) {
	body := []byte("Action=GetCallerIdentity")
	r := query(t, string(body))
	sign(t, r, body, "eu-west-1", "iam", clock)
	if _, err := verifier(false, "sts", "ec2").Verify(r, body); kindOf(err) != WrongScope {
		t.Fatalf("iam-scoped request to sts/ec2: %v", err)
	}
}

func TestPresigned(t *testing.T) {
	r := httptest.NewRequest("GET", "https://bucket.example/my%20key/obj", nil)
	// S3 encodes the path once, as its client configures the signer.
	s3signer := v4.NewSigner(func(o *v4.SignerOptions) { o.DisableURIPathEscaping = true })
	url, _, err := s3signer.PresignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret},
		withExpires(r, 300), UnsignedPayload, "s3", "eu-west-1", clock)
	if err != nil {
		t.Fatal(err)
	}
	pr := httptest.NewRequest("GET", url, nil)
	if _, err := verifier(true, "s3").Verify(pr, nil); err != nil {
		t.Fatalf("fresh presigned URL: %v", err)
	}
	late := verifier(true, "s3")
	late.Now = func() time.Time { return clock.Add(301 * time.Second) }
	if _, err := late.Verify(pr, nil); kindOf(err) != Expired {
		t.Fatalf("expired presigned URL: %v", err)
	}
	tampered := httptest.NewRequest("GET", strings.Replace(url, "obj", "other", 1), nil)
	if _, err := verifier(true, "s3").Verify(tampered, nil); kindOf(err) != BadSignature {
		t.Fatalf("presigned URL for another key: %v", err)
	}
}

func withExpires(r *http.Request, secs int) *http.Request {
	q := r.URL.Query()
	q.Set("X-Amz-Expires", itoa(secs))
	r.URL.RawQuery = q.Encode()
	return r
}

// The SDK's clients, as they really sign (path escaping, headers, payload
// modes), pass; their requests with the body altered in flight do not.
func TestRealClients(t *testing.T) {
	var lastErr error
	var tamper bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if tamper {
			body = bytes.Replace(body, []byte("GetCallerIdentity"), []byte("GetSessionToken"), 1)
		}
		s3mode := r.Header.Get("X-Amz-Content-Sha256") != "" && !strings.Contains(r.Header.Get("Content-Type"), "x-www-form")
		_, lastErr = (&Verifier{Secret: verifier(false).Secret, Region: "eu-west-1", S3: s3mode}).Verify(r, body)
		if lastErr != nil {
			w.WriteHeader(403)
			return
		}
		if s3mode {
			w.WriteHeader(200)
			return
		}
		w.Header().Set("Content-Type", "text/xml")
		io.WriteString(w, `<GetCallerIdentityResponse><GetCallerIdentityResult><Account>123456789012</Account><Arn>arn:aws:iam::123456789012:user/x</Arn><UserId>x</UserId></GetCallerIdentityResult></GetCallerIdentityResponse>`)
	}))
	defer srv.Close()
	cfg := aws.Config{Region: "eu-west-1", Credentials: credentials.NewStaticCredentialsProvider(akid, secret, ""),
		BaseEndpoint: aws.String(srv.URL), RetryMaxAttempts: 1}
	ctx := context.Background()
	// The verifier's clock is the real one here: the SDK signs with it.
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, nil); err != nil || lastErr != nil {
		t.Fatalf("sts: %v / %v", err, lastErr)
	}
	cl := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	for _, key := range []string{"plain", "with space/and+plus", "ünïcode/π"} {
		if _, err := cl.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String(key), Body: strings.NewReader("hello")}); err != nil || lastErr != nil {
			t.Fatalf("s3 put %q: %v / %v", key, err, lastErr)
		}
	}
	tamper = true
	if _, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, nil); err == nil || kindOf(lastErr) != BadSignature {
		t.Fatalf("tampered sts call: %v / %v", err, lastErr)
	}
}

func sha(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func itoa(n int) string { return strconv.Itoa(n) }
