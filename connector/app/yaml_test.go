package app

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/awslabs/goformation/v7"
	"github.com/awslabs/goformation/v7/cloudformation"
	"github.com/awslabs/goformation/v7/intrinsics"
	"gopkg.in/yaml.v3"

	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// adversarial are strings a YAML reader could take for something else, or
// mangle: indicators, comments, keys, reserved words, numbers, dates, blanks
// at the ends, line breaks of every kind, controls, invalid UTF-8.
var adversarial = []string{
	"", " ", "  lead", "trail ", " both ", "a: b", "a:b", "a:", ":a", ": a", "::1", "a #b", "a#b", "#a", "#", "a #",
	"-", "- a", "-a", "--", "---", "--- a", "...", "... a", "?", "? a", "?a", ",a", "a,b", "[a]", "]", "a]b", "{a}", "}",
	"&a", "*a", "!a", "!!str", "!Ref X", "!Sub ${X}", "|", "| a", ">", "> a", "'", "'a'", "a'b", "it's: x", "\"", "\"a\"",
	"%a", "%YAML 1.2", "@a", "`a", "\\", `a\nb`, "${AWS::Region}", "<script>alert(1)</script>", "a & b",
	"true", "True", "TRUE", "tRUE", "false", "yes", "Yes", "no", "NO", "on", "Off", "y", "N", "null", "Null", "NULL", "~",
	"1", "-1", "+1", "01", "08", "0777", "0x1F", "0o17", "0b101", "-0b101", "1_000", "1__0", "1.5", ".5", "5.", "1e3",
	"1E-3", "+12.5e+3", ".inf", "-.Inf", "+.INF", ".NaN", "Inf", "NaN", "99999999999999999999999", "1e999", "1:20",
	"-1:20", "190:20:30.15", "2010-09-09", "2001-12-14t21:59:43.10-05:00", "2002-12-14 21:59:43.10 -5", "<<", "=",
	"10.20.1.10", "/dev/sda1", "t3.small", "AWS::NoValue", "Fn::If", "rehost:app",
	"a\tb", "\t", "tab\t", "\ta", "x:\ty", "a\nb", "a\nb\n", "a\n\n", "a\n\n\n", "\n", "\n\n", "\na", " a\nb", "a \nb",
	"a\n b", "a\n\tb", "\ta\nb", "a\t\nb", "a\nb ", "a\n \nb", "a\r\nb", "a\rb", "\r", "a\u0085b", "a\u2028b", "a\u2029b",
	"\ufeffa", "a\ufeff", "a\x00b", "\x07\x1b", "\x7f", "\u0080", "\u009f", "é", "日本語", "emoji 😀", "\u00a0", "\u00a0a",
	"a\u00a0", "\u3000", "\ufffd", "\xff\xfe", "a\xffb", "\xc3",
	"#!/bin/sh\necho db ready > /var/tmp/rehost-ready\n", "#!/bin/sh\necho hi # not a comment\n", "key: value\n- item\n",
	"line\n  more indented\nback\n", "---\n...\n", "<powershell>\r\nStart-Service x\r\n</powershell>", "a\n#b\n",
	strings.Repeat("long ", 300), strings.Repeat("x", 2000) + "\n" + strings.Repeat("y", 2000),
}

// placed puts s where the template puts strings: a map value and a key, a
// list item, a list in a list, a map in a list, at indentations that are
// and are not multiples of four.
func placed(s string) obj {
	return obj{
		"value": s,
		"keys":  obj{s: s, "other": 1},
		"list":  []any{s, []any{s, obj{"k": s, "n": true}}, obj{"a": s, "b": []any{s}}},
		"deep":  obj{"in": []any{obj{"x": obj{"y": []any{[]any{s}, obj{"z": s}}}}}},
	}
}

// readBack is what yaml.v3 reads from the writer's text of tree.
func readBack(t *testing.T, tree obj) (any, []byte) {
	t.Helper()
	text := yamlDocument(tree)
	var got any
	if err := yaml.Unmarshal(text, &got); err != nil {
		t.Fatalf("yaml.v3 cannot read the writer's text: %v\n%s", err, text)
	}
	return got, text
}

// wantTree is tree with each string as encoding/json writes it out.
func wantTree(tree any) any {
	switch v := tree.(type) {
	case obj:
		out := obj{}
		for k, x := range v {
			out[validUTF8(k)] = wantTree(x)
		}
		return out
	case []any:
		out := []any{}
		for _, x := range v {
			out = append(out, wantTree(x))
		}
		return out
	case string:
		return validUTF8(v)
	}
	return tree
}

func checkReadsBack(t *testing.T, s string) {
	t.Helper()
	got, text := readBack(t, placed(s))
	if w := wantTree(placed(s)); !reflect.DeepEqual(got, w) {
		t.Errorf("%q reads back as another value tree:\n%s\nread: %#v", s, text, got)
	}
}

// Every adversarial string, in every place the template has one, reads
// back through yaml.v3 as the same value tree.
func TestYAMLReadsBackAsWritten(t *testing.T) {
	for _, s := range adversarial {
		checkReadsBack(t, s)
	}
}

// What YAML 1.1 readers (not yaml.v3) take for booleans, numbers and
// dates is quoted too, and nothing else that is safe plain is.
func TestYAMLQuotesWhatYAML11Misreads(t *testing.T) {
	for _, s := range []string{"yes", "No", "on", "OFF", "y", "N", "1:20", "190:20:30.15", "0777", "2002-12-14", "1_000", "<<", "="} {
		if got := string(yamlDocument(obj{"v": s})); got != "v: \""+s+"\"\n" {
			t.Errorf("%q is written %q, want it double-quoted", s, got)
		}
	}
	for _, s := range []string{"10.20.1.10", "t3.small", "a#b", "a:b", "yesno", "1.2.3", "x-1"} {
		if got := string(yamlDocument(obj{"v": s})); got != "v: "+s+"\n" {
			t.Errorf("%q is written %q, want it plain", s, got)
		}
	}
}

// Strings made at random of the fragments that trouble YAML read back as
// written; the seed is fixed, so a failure repeats.
func TestYAMLReadsBackRandomStrings(t *testing.T) {
	frags := []string{" ", "  ", "\n", "\t", "\r", ":", ": ", "#", " #", "-", "- ", "'", "\"", "\\", "a", "Z", "1", "0x",
		"e", ".", "_", "?", "|", ">", "{", "}", "[", "]", ",", "&", "*", "!", "%", "@", "`", "~", "é", "\u2028", "\u0085",
		"\x00", "\x1b", "\ufeff", "\xff", "yes", "null", "true", "---", "...", "<<", "2010-09-09", "1:2"}
	r := rand.New(rand.NewPCG(19, 3))
	for range 3000 {
		var b strings.Builder
		for range r.IntN(8) {
			b.WriteString(frags[r.IntN(len(frags))])
		}
		checkReadsBack(t, b.String())
	}
}

// FuzzYAMLString: `go test ./connector/app -fuzz FuzzYAMLString` searches
// for a string the writer quotes wrongly; plain `go test` runs the seeds.
func FuzzYAMLString(f *testing.F) {
	for _, s := range adversarial {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { checkReadsBack(t, s) })
}

// Where a string needs no care the writer's text is yaml.v3's own, layout
// included, so templates read as they did when yaml.v3 wrote them.
func TestYAMLLayoutIsYAMLv3s(t *testing.T) {
	tree := obj{
		"plain": "a b", "colon": "a: b", "number": "1800", "empty": "", "block": "line 1\nline 2\n", "strip": "a\nb",
		"keep": "a\n\n", "int": 2, "yes": true, "none": obj{}, "nothing": []any{},
		"list": []any{"x", []any{"y", []any{"z", obj{"k": "v", "l": []any{"m"}}}}, obj{"a": "b", "c": obj{"d": []any{"e"}}}, "t\nu\n"},
		"map":  obj{"in": obj{"list": []any{obj{"deep": obj{"deeper": "w\n", "l": []any{obj{}, []any{}}}}}}},
	}
	v3, err := yaml.Marshal(tree)
	if err != nil {
		t.Fatal(err)
	}
	if got := yamlDocument(tree); string(got) != string(v3) {
		t.Errorf("the writer's text:\n%s\nyaml.v3's:\n%s", got, v3)
	}
}

// A template whose every user-given string is adversarial reads the same
// from YAML (yaml.v3) as from JSON (encoding/json), and goformation reads
// both to one template.
func TestTemplateYAMLWithHostileStrings(t *testing.T) {
	for i, s := range adversarial {
		pub := i%2 == 0
		in := TemplateInput{AppID: "app-1", AppName: s, Test: &store.TestLaunchConfig{Subnet: "subnet-t"}, Groups: []TemplateGroup{{
			GroupID: "g", Name: s, LogicalID: "GroupG",
			Servers: []TemplateServer{{ServerID: "s-1", Name: s, LogicalID: "Srv", UserData: s,
				Image: awstarget.Image{ID: "ami-1", Devices: []string{"/dev/sda1"}},
				Launch: store.ServerLaunch{InstanceType: "t3.small", KeyName: s, InstanceProfile: s, Subnet: "subnet-c",
					SecurityGroups: []string{"sg-1", s}, PrivateIP: s, AssociatePublicIP: &pub, VolumeType: "gp3",
					Tags: []store.Tag{{Key: "k " + s, Value: s}, {Key: "v", Value: s + "x"}}}}},
		}}}
		js, err := Template(in, FormatJSON)
		if err != nil {
			t.Fatal(err)
		}
		ym, err := Template(in, FormatYAML)
		if err != nil {
			t.Fatal(err)
		}
		var fromJSON, fromYAML any
		if err := json.Unmarshal(js, &fromJSON); err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(ym, &fromYAML); err != nil {
			t.Fatalf("%q: %v\n%s", s, err, ym)
		}
		if !reflect.DeepEqual(fromJSON, floats(fromYAML)) {
			t.Errorf("%q: the YAML template reads as another template than the JSON one:\n%s", s, ym)
		}
		keep := &intrinsics.ProcessorOptions{IntrinsicHandlerOverrides: cloudformation.EncoderIntrinsics}
		gj, err := goformation.ParseJSONWithOptions(js, keep)
		if err != nil {
			t.Fatalf("%q: goformation: %v", s, err)
		}
		gy, err := goformation.ParseYAMLWithOptions(ym, keep)
		if err != nil {
			t.Fatalf("%q: goformation: %v", s, err)
		}
		if _, err := gj.GetEC2InstanceWithName("Srv"); err != nil {
			t.Errorf("%q: %v", s, err)
		}
		if !reflect.DeepEqual(gj, gy) {
			t.Errorf("%q: goformation reads the YAML template as another template", s)
		}
	}
}

// floats turns yaml.v3's ints into encoding/json's float64s.
func floats(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			v[k] = floats(x)
		}
	case []any:
		for i, x := range v {
			v[i] = floats(x)
		}
	case int:
		return float64(v)
	}
	return v
}
