package app

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A YAML writer for what a template is made of: maps with string keys
// (written sorted), lists, strings, ints and booleans, in block style.
// The layout is yaml.v3's (a map's children at the next multiple of four
// columns, a block in a list two columns in after its "- "), so the text is
// what it was while the template went through yaml.v3. Strings are written
// plain only where a YAML 1.1 or 1.2 reader cannot take them for anything
// else; otherwise single-quoted, as a literal block when they span lines,
// or double-quoted with escapes where neither holds every character.
// TestYAMLReadsBackAsWritten and FuzzYAMLString check that yaml.v3 reads
// every kind of string back as written.

// yamlDocument renders root, a map, as a YAML document.
func yamlDocument(root obj) []byte {
	var w yamlWriter
	w.block(root, 0, true)
	w.b.WriteByte('\n')
	return []byte(w.b.String())
}

type yamlWriter struct{ b strings.Builder }

// block writes a map or list at indentation indent; inline says the first
// entry goes on the current line (after "- ", or at the document's start).
func (w *yamlWriter) block(v any, indent int, inline bool) {
	switch v := v.(type) {
	case obj:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for i, k := range keys {
			if i > 0 || !inline {
				w.newline(indent)
			}
			// A reader takes a key on its line for at most 1024
			// characters; a longer one is an explicit "? " key.
			if key := yamlLine(k); len(key) <= 1000 {
				w.b.WriteString(key)
			} else {
				w.b.WriteString("? " + key)
				w.newline(indent)
			}
			w.b.WriteByte(':')
			w.value(v[k], nextIndent(indent), false)
		}
	case []any:
		for i, item := range v {
			if i > 0 || !inline {
				w.newline(indent)
			}
			w.b.WriteByte('-')
			w.value(item, indent+2, true)
		}
	default:
		panic(fmt.Sprintf("yaml: a %T is not a block", v))
	}
}

// value writes v after "key:" or (afterDash) "-"; indent is where a block
// under it goes.
func (w *yamlWriter) value(v any, indent int, afterDash bool) {
	switch v := v.(type) {
	case obj:
		if len(v) == 0 {
			w.b.WriteString(" {}")
			return
		}
	case []any:
		if len(v) == 0 {
			w.b.WriteString(" []")
			return
		}
	case string:
		w.b.WriteByte(' ')
		w.scalar(v, indent)
		return
	case int:
		w.b.WriteString(" " + strconv.Itoa(v))
		return
	case bool:
		w.b.WriteString(" " + strconv.FormatBool(v))
		return
	default:
		panic(fmt.Sprintf("yaml: cannot write a %T", v))
	}
	// A nested block: on the next line under a key, on this one after "- ".
	if afterDash {
		w.b.WriteByte(' ')
	}
	w.block(v, indent, afterDash)
}

func (w *yamlWriter) newline(indent int) {
	w.b.WriteByte('\n')
	w.b.WriteString(strings.Repeat(" ", indent))
}

func nextIndent(indent int) int { return 4 * ((indent + 4) / 4) }

// scalar writes s, whose literal block (if it is one) is indented by indent.
func (w *yamlWriter) scalar(s string, indent int) {
	s = validUTF8(s)
	if strings.Contains(s, "\n") && literalOK(s) {
		w.literal(s, indent)
		return
	}
	w.b.WriteString(yamlLine(s))
}

// yamlLine is s on one line, as a key or a value: plain, single-quoted, or
// double-quoted where it has a line break or reads as something else
// unquoted (as yaml.v3 does).
func yamlLine(s string) string {
	s = validUTF8(s)
	switch {
	case strings.Contains(s, "\n"), yamlNonString(s):
		return doubleQuoted(s)
	case plainOK(s):
		return s
	case singleOK(s):
		return "'" + strings.ReplaceAll(s, "'", "''") + "'"
	}
	return doubleQuoted(s)
}

// literal writes s, which has a line break, as a "|" block: "|-" when it
// does not end with a line break, "|+" when it ends with more than one.
func (w *yamlWriter) literal(s string, indent int) {
	chomp := ""
	switch {
	case !strings.HasSuffix(s, "\n"):
		chomp = "-"
	case strings.HasSuffix(s, "\n\n"):
		chomp = "+"
	}
	w.b.WriteString("|" + chomp)
	body := strings.TrimSuffix(s, "\n")
	for line := range strings.SplitSeq(body, "\n") {
		w.b.WriteByte('\n')
		if line != "" {
			w.b.WriteString(strings.Repeat(" ", indent) + line)
		}
	}
}

// validUTF8 replaces each byte that is not UTF-8 by U+FFFD, as
// encoding/json does in the JSON template.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// printable is YAML's printable set less what a reader takes for a line
// break (NEL, LS, PS) or drops (BOM); tab and line feed are not in it.
func printable(r rune) bool {
	switch {
	case r == 0x2028, r == 0x2029, r == 0xFEFF:
		return false
	case r >= 0x20 && r <= 0x7E, r >= 0xA0 && r <= 0xD7FF, r >= 0xE000 && r <= 0xFFFD, r >= 0x10000 && r <= 0x10FFFF:
		return true
	}
	return false
}

func allPrintable(s string, also ...rune) bool {
	for _, r := range s {
		if !printable(r) && !slices.Contains(also, r) {
			return false
		}
	}
	return true
}

// plainOK says s, one line that reads as a string, may go unquoted: it
// starts with no indicator, has no spaces at its ends, and has no ": ",
// " #" or trailing ":" (a key or a comment).
func plainOK(s string) bool {
	if s == "" || !allPrintable(s) || s[0] == ' ' || s[len(s)-1] == ' ' || s[len(s)-1] == ':' {
		return false
	}
	if strings.ContainsAny(s[:1], "-?:,[]{}#&*!|>'\"%@`") || strings.HasPrefix(s, "...") {
		return false
	}
	return !strings.Contains(s, ": ") && !strings.Contains(s, " #")
}

// singleOK says s can be single-quoted: one line of printable characters.
func singleOK(s string) bool { return allPrintable(s) }

// literalOK says s, which has a line break, can be a literal block: nothing
// but printable characters, tabs and line feeds, no line ending in a blank
// (a reader would keep or drop it by its own rules) and a first character
// that is not blank (it would set the block's indentation).
func literalOK(s string) bool {
	if !allPrintable(s, '\n', '\t') || strings.ContainsAny(s[:1], " \t\n") {
		return false
	}
	body := strings.TrimRight(s, "\n")
	return !strings.HasSuffix(body, " ") && !strings.HasSuffix(body, "\t") &&
		!strings.Contains(s, " \n") && !strings.Contains(s, "\t\n")
}

// yamlNonString says a reader may take s, unquoted, for something other
// than a string: a null, a boolean (YAML 1.1's yes, no, on, off, y and n
// too), a number in any base or sexagesimal, infinity, not-a-number, a date
// or a merge key. It errs towards yes: a quoted string is never misread.
func yamlNonString(s string) bool {
	switch strings.ToLower(s) {
	case "", "~", "null", "true", "false", "yes", "no", "on", "off", "y", "n",
		".inf", "+.inf", "-.inf", ".nan", "<<", "=":
		return true
	}
	if len(s) >= 5 && strings.Trim(s[:4], "0123456789") == "" && s[4] == '-' {
		return true // a date or timestamp
	}
	n := strings.ReplaceAll(s, "_", "")
	if _, err := strconv.ParseInt(n, 0, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		return true
	}
	if _, err := strconv.ParseUint(n, 0, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		return true
	}
	if _, err := strconv.ParseFloat(n, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		return true
	}
	// Sexagesimal (1:20, 190:20:30.15), which YAML 1.1 reads as a number.
	unsigned := strings.TrimLeft(s, "+-")
	return strings.Contains(s, ":") && unsigned != "" && unsigned[0] >= '0' && unsigned[0] <= '9' &&
		strings.Trim(s, "0123456789:._+-") == ""
}

// doubleQuoted is s in double quotes, every character outside the
// printable set escaped.
func doubleQuoted(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		case 0:
			b.WriteString(`\0`)
		default:
			switch {
			case printable(r):
				b.WriteRune(r)
			case r <= 0xFF:
				fmt.Fprintf(&b, `\x%02X`, r)
			case r <= 0xFFFF:
				fmt.Fprintf(&b, `\u%04X`, r)
			default:
				fmt.Fprintf(&b, `\U%08X`, r)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}
