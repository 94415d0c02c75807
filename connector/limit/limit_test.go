package limit

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, c := range []struct {
		f    Field
		in   string
		want string // "" accepted, else a part of the error
	}{
		{SourceName, "vc1", ""},
		{SourceName, "vc-1.lab_2", ""},
		{SourceName, "", ""}, // whether it is required is the operation's rule
		{SourceName, "<script>alert(1)</script>", `'<' is not allowed`},
		{SourceName, "a/b", `'/' is not allowed`},
		{SourceName, "-vc", `'-' is not allowed`},
		{SourceName, "vc 1", `' ' is not allowed`},
		{SourceName, "vcé", `'é' is not allowed`},
		{SourceName, strings.Repeat("v", 64), ""},
		{SourceName, strings.Repeat("v", 65), "65 characters, want at most 64"},
		{Description, strings.Repeat("é", 255), ""}, // characters, not bytes
		{Description, strings.Repeat("x", 100<<10), "102400 characters, want at most 255"},
		{Description, "two\nlines", `'\n' is not allowed`},
		{Description, "bell\a", `'\a' is not allowed`},
		{Description, "\xff", "not valid UTF-8"},
		{CAPEM, "-----BEGIN CERTIFICATE-----\r\nMIIB\n-----END CERTIFICATE-----\n", ""},
		{RoleName, "vmimport", ""},
		{RoleName, "vm import", `' ' is not allowed`},
		{Bucket, "ab", "2 characters, want 3 to 63"},
		{KeyName, "laptop (Ana's)", ""},
	} {
		err := c.f.Check(c.in)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s %.20q: %v, want accepted", c.f.Label, c.in, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s %.20q: %v, want an error saying %q", c.f.Label, c.in, err, c.want)
		}
	}
	// The error names the field and does not carry a long value back.
	err := Description.Check(strings.Repeat("x", 100<<10))
	if !strings.HasPrefix(err.Error(), "description ") || len(err.Error()) > 200 {
		t.Errorf("error %q: want it to name the field and stay short", err)
	}
}

// docsTable is the table of docs/usage.md that lists every field's rules.
func docsTable() string {
	var b strings.Builder
	b.WriteString("| field | characters | length | the bound's origin |\n|---|---|---|---|\n")
	for _, f := range Fields() {
		n := fmt.Sprintf("at most %d", f.Max)
		if f.Min > 0 {
			n = fmt.Sprintf("%d to %d", f.Min, f.Max)
		}
		b.WriteString("| " + f.Label + " | " + strings.ReplaceAll(f.Chars(), "|", `\|`) + " | " + n + " | " + strings.ReplaceAll(f.From, "|", `\|`) + " |\n")
	}
	return b.String()
}

// docs/usage.md lists every field with the rules Check enforces.
func TestDocs(t *testing.T) {
	doc, err := os.ReadFile("../../docs/usage.md")
	if err != nil {
		t.Fatal(err)
	}
	if want := docsTable(); !strings.Contains(string(doc), want) {
		t.Errorf("docs/usage.md does not list the fields' rules as connector/limit has them; want this table in it:\n%s", want)
	}
}
