package cli_test

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/internal/lab"
)

// Every rehost and rehost-lab command line in README.md and docs/*.md — in
// code blocks and in inline code — names a verb that exists and gives it
// only flags it has.
func TestDocsCommandLinesParse(t *testing.T) {
	files, _ := filepath.Glob("../../docs/*.md")
	files = append(files, "../../README.md")
	programs := map[string]*cli.Program{"rehost": cli.Product(), "rehost-lab": lab.Program}
	checked := 0
	for _, f := range files {
		for _, c := range commandLines(t, f) {
			p := programs[c.args[0]]
			args := c.args[1:]
			// "rehost COMMAND --help" stands for every verb.
			if len(args) > 0 && args[0] == "COMMAND" {
				checked++
				continue
			}
			// "rehost app …" names a family of verbs, and so does inline
			// code naming only the first words of verbs ("rehost admin key").
			if c.synopsis && len(args) > 0 && !slices.ContainsFunc(args, isFlag) && p.Check(args) != nil {
				args = append(args, "…")
			}
			if n := len(args); n > 0 && isEllipsis(args[n-1]) && !slices.ContainsFunc(args, isFlag) {
				prefix := strings.Join(args[:n-1], " ") + " "
				if !slices.ContainsFunc(p.Names(), func(v string) bool { return strings.HasPrefix(v, prefix) }) {
					t.Errorf("%s:%d: %q: %s has no verb %s…", c.file, c.line, c.text, c.args[0], prefix)
				}
				checked++
				continue
			}
			args = slices.DeleteFunc(args, isEllipsis)
			if err := p.Check(args); err != nil {
				t.Errorf("%s:%d: %q: %v", c.file, c.line, c.text, err)
			}
			checked++
		}
	}
	if checked < 20 {
		t.Errorf("only %d command lines found in the docs: is the extraction broken?", checked)
	}
	t.Logf("%d command lines checked", checked)
}

type commandLine struct {
	file     string
	line     int
	text     string
	args     []string
	synopsis bool // from inline code
}

var (
	inlineCode = regexp.MustCompile("`([^`]+)`")
	envAssign  = regexp.MustCompile(`^[A-Z_][A-Z0-9_]*=`)
)

func isFlag(a string) bool     { return strings.HasPrefix(a, "-") }
func isEllipsis(a string) bool { return a == "…" || a == "..." }

// commandLines finds the command lines of a Markdown file: the lines of
// its fenced code blocks and its inline code spans that run rehost or
// rehost-lab (after environment assignments, in any segment of a pipe or
// list). Synopses in inline code expand: "job pause|resume" is two
// commands, "[--json]" an optional flag.
func commandLines(t *testing.T, file string) []commandLine {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	name := filepath.Base(file)
	var out []commandLine
	add := func(line int, text string, synopsis bool) {
		for _, seg := range regexp.MustCompile(`\s*(?:&&|\|\||;|\|)\s+`).Split(text, -1) {
			words := split(seg)
			for len(words) > 0 && (envAssign.MatchString(words[0]) || words[0] == "sudo" || words[0] == "$") {
				words = words[1:]
			}
			if len(words) == 0 {
				continue
			}
			prog := strings.TrimPrefix(words[0], "bin/")
			if prog != "rehost" && prog != "rehost-lab" {
				continue
			}
			words[0] = prog
			variants := [][]string{words}
			if synopsis {
				variants = expand(words)
			}
			for _, w := range variants {
				out = append(out, commandLine{name, line, seg, w, synopsis})
			}
		}
	}
	sc := bufio.NewScanner(f)
	// Only shell blocks hold commands; unlabelled ones show output.
	n, inBlock, shell, cont := 0, false, false, ""
	for sc.Scan() {
		n++
		l := sc.Text()
		if fence, ok := strings.CutPrefix(strings.TrimSpace(l), "```"); ok {
			inBlock = !inBlock
			shell = inBlock && slices.Contains([]string{"sh", "bash", "shell", "console"}, fence)
			continue
		}
		if inBlock && !shell {
			continue
		}
		if inBlock {
			l = cont + l
			cont = ""
			if strings.HasSuffix(l, `\`) {
				cont = strings.TrimSuffix(l, `\`) + " "
				continue
			}
			if i := strings.Index(l, " #"); i >= 0 {
				l = l[:i]
			}
			add(n, strings.TrimSpace(l), false)
			continue
		}
		for _, m := range inlineCode.FindAllStringSubmatch(l, -1) {
			add(n, m[1], true)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// split cuts a command line into words, honouring single and double quotes
// and keeping a command substitution "$(…)" in one word.
func split(s string) []string {
	var out []string
	var cur strings.Builder
	in, quote, depth := false, rune(0), 0
	rs := []rune(s)
	for i, r := range rs {
		switch {
		case depth > 0:
			cur.WriteRune(r)
			switch r {
			case '(':
				depth++
			case ')':
				depth--
			}
		case r == '$' && i+1 < len(rs) && rs[i+1] == '(':
			cur.WriteRune(r)
			depth, in = 1, true
			cur.WriteRune('(')
			rs[i+1] = 0
		case r == 0:
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ' || r == '\t':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// expand turns a synopsis into the command lines it stands for: a word
// with alternatives ("pause|resume") into one line each, optional parts
// ("[--json]", "[--server …]") kept, their brackets dropped.
func expand(words []string) [][]string {
	lines := [][]string{nil}
	for _, w := range words {
		w = strings.Trim(w, "[]")
		if w == "" {
			continue
		}
		alts := []string{w}
		if strings.Contains(w, "|") && !strings.HasPrefix(w, "-") {
			alts = strings.Split(w, "|")
		}
		var next [][]string
		for _, l := range lines {
			for _, a := range alts {
				next = append(next, append(slices.Clone(l), a))
			}
		}
		lines = next
	}
	return lines
}
