package web

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/a-h/templ"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/limit"
)

// form is a submitted (or about to be shown) form: its values, and the
// errors to show next to each field.
type form struct {
	Values url.Values
	Errors map[string]string
	// Error is the form's own error, shown above it, when it belongs to no
	// one field.
	Error string
	// order lists the fields with errors as they failed, for the summary.
	order []string
}

func newForm(v url.Values) *form {
	if v == nil {
		v = url.Values{}
	}
	return &form{Values: v, Errors: map[string]string{}}
}

// Get is a field's value, trimmed.
func (f *form) Get(name string) string { return strings.TrimSpace(f.Values.Get(name)) }

// On reports whether a checkbox is checked.
func (f *form) On(name string) bool { return f.Values.Get(name) != "" }

// fail records the error of a field (the first one given stays).
func (f *form) fail(name, msg string) {
	if _, ok := f.Errors[name]; ok {
		return
	}
	f.Errors[name] = msg
	f.order = append(f.order, name)
}

func (f *form) ok() bool { return len(f.Errors) == 0 && f.Error == "" }

// require fails each empty field.
func (f *form) require(names ...string) {
	for _, n := range names {
		if f.Get(n) == "" {
			f.fail(n, "required")
		}
	}
}

// Summary lists the field errors in order, for the error summary at the
// top of the form (each links to its field).
func (f *form) Summary() []fieldError {
	var out []fieldError
	for _, n := range f.order {
		out = append(out, fieldError{Field: n, Label: fieldLabel(n), Message: f.Errors[n]})
	}
	return out
}

type fieldError struct{ Field, Label, Message string }

// fieldLabel names a field in the error summary: its name in words.
func fieldLabel(name string) string {
	s := strings.ReplaceAll(name, "_", " ")
	s = strings.NewReplacer("id", "ID", "arn", "ARN", "pem", "PEM", "kms", "KMS", "s3", "S3", " ok", "").Replace(s)
	return strings.ToUpper(s[:1]) + s[1:]
}

// apiError places an API error next to the field it is about: fields maps
// an API member (the error's Field, or failing that a word its message
// contains, lower-case) to the form's field; others go above the form.
func (f *form) apiError(err error, fields map[string]string) {
	msg := err.Error()
	var ae *api.Error
	if errors.As(err, &ae) {
		msg = ae.Message
		if fld, ok := fields[strings.ToLower(ae.Field)]; ok && ae.Field != "" {
			f.fail(fld, msg)
			return
		}
	}
	lower := strings.ToLower(msg)
	best, at := "", -1
	for word, field := range fields {
		if i := strings.Index(lower, strings.ToLower(word)); i >= 0 && (at < 0 || i < at) {
			best, at = field, i
		}
	}
	if best == "" {
		f.Error = msg
		return
	}
	f.fail(best, msg)
}

// fieldView is what the field templates render.
type fieldView struct {
	Name, Label, Type, Value, Hint, Error string
	Required, Optional, Checked           bool
	Autocomplete, Placeholder, Min, Max   string
	List, Pattern, Inputmode, Rows        string
	// MaxLength is the most characters the field takes (0: no bound
	// shown); the server enforces it whatever the browser does.
	MaxLength int
	Options   []option
}

func (v fieldView) id() string { return "f-" + v.Name }

// describedBy lists the ids of the field's hint and error, for
// aria-describedby.
func (v fieldView) describedBy() string {
	var ids []string
	if v.Hint != "" {
		ids = append(ids, v.id()+"-hint")
	}
	if v.Error != "" {
		ids = append(ids, v.id()+"-error")
	}
	return strings.Join(ids, " ")
}

// aria is the ARIA attributes of the field's control: what describes it
// (its hint and error) and, with an error, that it is invalid.
func (v fieldView) aria() templ.OrderedAttributes {
	var a templ.OrderedAttributes
	if d := v.describedBy(); d != "" {
		a = append(a, templ.KeyValue[string, any]{Key: "aria-describedby", Value: d})
	}
	if v.Error != "" {
		a = append(a, templ.KeyValue[string, any]{Key: "aria-invalid", Value: "true"})
	}
	return a
}

type option struct {
	Value, Label string
	Selected     bool
}

// field builds a fieldView from a form. opts are "required", "optional",
// "secret" (the value is never rendered back), or key=value pairs: hint,
// autocomplete, placeholder, min, max, maxlength (see maxLen), list,
// pattern, inputmode, rows, value (the value when the form has none).
func field(f *form, name, label, typ string, opts ...string) fieldView {
	v := fieldView{Name: name, Label: label, Type: typ}
	secret := false
	def := ""
	// The options that set an attribute of the control to their value.
	attrs := map[string]*string{"hint": &v.Hint, "autocomplete": &v.Autocomplete, "placeholder": &v.Placeholder,
		"min": &v.Min, "max": &v.Max, "list": &v.List, "pattern": &v.Pattern, "inputmode": &v.Inputmode, "rows": &v.Rows,
		"value": &def}
	for _, o := range opts {
		k, val, _ := strings.Cut(o, "=")
		if p, ok := attrs[k]; ok {
			*p = val
			continue
		}
		switch k {
		case "required":
			v.Required = true
		case "optional":
			v.Optional = true
		case "secret":
			secret = true
		case "maxlength":
			v.MaxLength, _ = strconv.Atoi(val)
		}
	}
	if f != nil {
		if _, ok := f.Values[name]; ok {
			v.Value = f.Values.Get(name)
		} else {
			v.Value = def
		}
		v.Error = f.Errors[name]
		v.Checked = f.On(name)
	}
	if secret {
		v.Value = ""
	}
	return v
}

// maxLen is the field option that shows a limit's bound on the form (the
// API enforces it).
func maxLen(l limit.Field) string { return "maxlength=" + strconv.Itoa(l.Max) }

// withOptions gives a select or radio field its choices, marking the one
// the form holds.
func withOptions(v fieldView, pairs ...string) fieldView {
	for i := 0; i+1 < len(pairs); i += 2 {
		v.Options = append(v.Options, option{Value: pairs[i], Label: pairs[i+1], Selected: pairs[i] == v.Value})
	}
	return v
}

// asAPIError reports whether err is an API error a user can act on (not an
// internal one), setting *e.
func asAPIError(err error, e **api.Error) bool {
	return errors.As(err, e) && (*e).Type != api.ErrInternal
}

// fieldInput renders a field (fieldControl). It is never inlined:
// inlining a component's constructor copies its whole rendering closure
// into each caller, which made 23 copies (420 KB of the binary) of this
// one.
//
//go:noinline
func fieldInput(v fieldView) templ.Component { return fieldControl(v) }
