// Package limit holds the rules every piece of text a user gives the
// connector obeys: names (which characters, how long) and the length of
// each free-text field. They are defined here once; the API's service
// (which the CLI, the HTTP API and the console all call) and the daemon's
// access keys enforce them, and the console shows each field's bound on
// its form. docs/usage.md lists them (a test checks it does).
//
// Lengths count characters (Unicode code points), not bytes. Where SMS's
// or AWS's own API model bounds a member, the bound is theirs, and From
// says so.
package limit

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Kind is what characters a field takes.
type Kind int

const (
	// Line is one line of printable text: no control characters.
	Line Kind = iota
	// Block is text of several lines: printable characters, tabs and line
	// breaks.
	Block
	// Name is a name that goes into commands, file names and logs: ASCII
	// letters, digits, '.', '_' and '-', starting with a letter or digit.
	Name
	// IAMName is an IAM name: letters, digits and + = , . @ _ -.
	IAMName
)

// Field is one kind of user-given text and its rules.
type Field struct {
	// Label is what errors and the docs call the field.
	Label string
	Kind  Kind
	// Min and Max bound its length in characters when it is given;
	// whether it must be given is the operation's rule.
	Min, Max int
	// From says where the bound comes from.
	From string
}

// The fields. Adding one here adds it to the docs' table (TestDocs).
var (
	SourceName = Field{Label: "source name", Kind: Name, Max: 64,
		From: "rehost: it is typed in commands (rehost source test NAME) and shown in every list"}
	SourceURL        = Field{Label: "source URL", Kind: Line, Max: 2048, From: "rehost: the longest URL browsers and proxies reliably carry"}
	SourceUser       = Field{Label: "source user", Kind: Line, Max: 256, From: "rehost: vCenter and Windows principals (user@domain, DOMAIN\\user) are shorter"}
	SourceSecret     = Field{Label: "source password or secret", Kind: Block, Max: 64 << 10, From: "rehost: room for a PEM certificate chain with its key"}
	SourceThumbprint = Field{Label: "certificate thumbprint", Kind: Line, Max: 128, From: "rehost: a SHA-256 thumbprint with colons is 95 characters"}
	SourceOptions    = Field{Label: "source options", Kind: Block, Max: 16 << 10, From: "rehost: the options of a Hyper-V cluster of 64 nodes fit"}

	Description = Field{Label: "description", Kind: Line, Max: 255,
		From: "SMS's API model sets none; 255 as EC2's for an image description"}
	RoleName = Field{Label: "role name", Kind: IAMName, Max: 64, From: "IAM's API model (roleNameType: 1–64 of [\\w+=,.@-])"}
	KMSKeyID = Field{Label: "KMS key", Kind: Line, Max: 2048, From: "KMS's API model (KeyIdType: 1–2048)"}
	ServerID = Field{Label: "server id", Kind: Line, Max: 128, From: "rehost: ids it issues are 19 characters"}
	JobID    = Field{Label: "replication job id", Kind: Line, Max: 128, From: "rehost: ids it issues are 25 characters"}

	Bucket      = Field{Label: "staging bucket", Kind: Line, Min: 3, Max: 63, From: "SMS's API model (S3BucketName: 3–63)"}
	Endpoint    = Field{Label: "endpoint URL", Kind: Line, Max: 2048, From: "rehost: as a source URL"}
	AccessKeyID = Field{Label: "access key id", Kind: Line, Min: 16, Max: 128, From: "IAM's API model (accessKeyIdType: 16–128)"}
	SecretKey   = Field{Label: "secret access key", Kind: Line, Max: 128, From: "rehost: AWS's are 40 characters"}
	RoleARN     = Field{Label: "role ARN", Kind: Line, Min: 20, Max: 2048, From: "IAM's API model (arnType: 20–2048)"}
	ExternalID  = Field{Label: "external id", Kind: Line, Min: 2, Max: 1224, From: "STS's API model (externalIdType: 2–1224)"}
	Profile     = Field{Label: "AWS profile", Kind: Line, Max: 128, From: "rehost"}
	CAPEM       = Field{Label: "extra CA certificate", Kind: Block, Max: 64 << 10, From: "rehost: room for a chain of a dozen certificates"}

	KeyName = Field{Label: "access key name", Kind: Line, Max: 128, From: "rehost"}
	// Password is the console's administrator password (its minimum
	// length is the password policy's, in connector/web).
	Password = Field{Label: "password", Kind: Line, Max: 1024, From: "rehost: bounds the work of hashing one"}
	Search   = Field{Label: "search", Kind: Line, Max: 256, From: "rehost"}
)

// Fields lists every field, in the docs' order.
func Fields() []Field {
	return []Field{SourceName, SourceURL, SourceUser, SourceSecret, SourceThumbprint, SourceOptions,
		Description, RoleName, KMSKeyID, ServerID, JobID,
		Bucket, Endpoint, AccessKeyID, SecretKey, RoleARN, ExternalID, Profile, CAPEM,
		KeyName, Password, Search}
}

// Chars says in words which characters the field takes.
func (f Field) Chars() string {
	switch f.Kind {
	case Name:
		return "ASCII letters, digits, '.', '_' and '-', starting with a letter or digit"
	case IAMName:
		return "ASCII letters, digits and + = , . @ _ -"
	case Block:
		return "printable characters and line breaks"
	}
	return "printable characters on one line"
}

// Check returns nil when s obeys the field's rules (an empty s always
// does), and otherwise an error that names the field and says what it
// takes.
func (f Field) Check(s string) error {
	n := utf8.RuneCountInString(s)
	switch {
	case !utf8.ValidString(s):
		return fmt.Errorf("%s: not valid UTF-8 text", f.Label)
	case n == 0:
		return nil
	case n < f.Min || n > f.Max:
		return fmt.Errorf("%s %s: %s", f.Label, quote(s), f.bounds(n))
	}
	if i := strings.IndexFunc(s, f.refuses); i >= 0 || (f.Kind == Name && !isAlnum(rune(s[0]))) {
		if i < 0 {
			i = 0
		}
		r, _ := utf8.DecodeRuneInString(s[i:])
		return fmt.Errorf("%s %s: %q is not allowed: use %s (at most %d)", f.Label, quote(s), r, f.Chars(), f.Max)
	}
	return nil
}

func (f Field) bounds(n int) string {
	if f.Min > 0 && n < f.Min {
		return fmt.Sprintf("%d characters, want %d to %d", n, f.Min, f.Max)
	}
	return fmt.Sprintf("%d characters, want at most %d", n, f.Max)
}

func (f Field) refuses(r rune) bool {
	switch f.Kind {
	case Name:
		return !isAlnum(r) && r != '.' && r != '_' && r != '-'
	case IAMName:
		return !isAlnum(r) && !strings.ContainsRune("+=,.@_-", r)
	case Block:
		return !unicode.IsPrint(r) && r != '\n' && r != '\r' && r != '\t'
	}
	return !unicode.IsPrint(r)
}

func isAlnum(r rune) bool { return r < utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r)) }

// quote shows a value in an error, shortened: the error must not carry a
// 100 KB value back to the user.
func quote(s string) string {
	const most = 40
	if utf8.RuneCountInString(s) <= most {
		return fmt.Sprintf("%q", s)
	}
	r := []rune(s)
	return fmt.Sprintf("%q…", string(r[:most]))
}
