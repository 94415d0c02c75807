package web

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/a-h/templ"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/pkg/source"
)

// sourceKind is one kind of source the add form offers. A kind lives in
// one file, source_<kind>.go, that calls addSourceKind from init.
type sourceKind struct {
	// Kind is the API's kind ("vsphere").
	Kind, Label string
	// Fields are the kind's fields in the add form (everything but the
	// name), filled from the form.
	Fields func(f *form) templ.Component
	// Input reads the kind's fields into the source to add, failing the
	// fields it finds wrong on the form.
	Input func(f *form) api.SourceInput
	// ErrorField names the field a connection error belongs next to
	// (default: see errorField).
	ErrorField func(e *api.Error) string
}

var sourceKinds []sourceKind

func addSourceKind(k sourceKind) { sourceKinds = append(sourceKinds, k) }

func findKind(kind string) (sourceKind, bool) {
	for _, k := range sourceKinds {
		if k.Kind == kind {
			return k, true
		}
	}
	return sourceKind{}, false
}

type sourcesView struct {
	Sources []api.Source
	Kind    sourceKind
	Kinds   []sourceKind
}

func (c *Console) sourcesPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	return c.sourcesView(w, r, rq, nil, http.StatusOK)
}

func (c *Console) sourcesView(w http.ResponseWriter, r *http.Request, rq *request, wz *wizardView, status int) error {
	out, err := c.svc.ListSources(r.Context(), &api.ListSourcesInput{})
	if err != nil {
		return err
	}
	f := rq.form
	if f == nil {
		f = newForm(nil)
		f.Values.Set("kind", r.URL.Query().Get("kind"))
	}
	k, ok := findKind(f.Get("kind"))
	if !ok {
		k, _ = findKind("vsphere")
		f.Values.Set("kind", k.Kind)
	}
	d := &sourcesView{Sources: out.Sources, Kind: k, Kinds: sourceKinds}
	v := &view{Title: "Sources", Nav: "sources", Wizard: wz, Form: f}
	return c.render(w, r, rq, status, v, sourcesPage(v, d))
}

func (c *Console) sourceAdd(w http.ResponseWriter, r *http.Request, rq *request) error {
	f := rq.form
	wz, err := c.inWizard(r, rq, "sources")
	if err != nil {
		return err
	}
	k, ok := findKind(f.Get("kind"))
	if !ok {
		f.fail("kind", "choose a kind of source")
		return c.sourcesView(w, r, rq, wz, http.StatusUnprocessableEntity)
	}
	f.require("name")
	in := k.Input(f)
	in.Kind, in.Name = k.Kind, f.Get("name")
	if !f.ok() {
		return c.sourcesView(w, r, rq, wz, http.StatusUnprocessableEntity)
	}
	out, err := c.svc.AddSource(r.Context(), &in)
	if err != nil {
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		switch {
		case ae.Type == api.ErrUntrustedCertificate && ae.Thumbprint != "" && in.Thumbprint != "":
			// The user pinned a certificate and the server presents
			// another: that is an error to look into, never an offer.
			f.Values.Del("offered_thumbprint")
			f.Values.Del("thumbprint_ok")
			f.fail("thumbprint", "the thumbprint you gave, "+in.Thumbprint+", does not match the one the server presents, "+ae.Thumbprint+
				". The certificate may have been replaced, or someone may be intercepting the connection: check the thumbprint on "+
				k.Label+"'s own pages (or with its administrator) before you change this field")
		case ae.Type == api.ErrUntrustedCertificate && ae.Thumbprint != "":
			f.Values.Set("thumbprint", ae.Thumbprint)
			f.Values.Set("offered_thumbprint", ae.Thumbprint)
			f.Values.Del("thumbprint_ok")
			f.fail("thumbprint", "the server presents a certificate this connector does not trust yet. Compare its SHA-256 thumbprint (below) with the one "+
				k.Label+" shows; if they match, tick the box to accept it and send the form again (with the password: it is never sent back to your browser)")
		default:
			fieldOf := errorField
			if k.ErrorField != nil {
				fieldOf = k.ErrorField
			}
			if fld := fieldOf(ae); fld != "" {
				f.fail(fld, ae.Message)
			} else {
				f.Error = ae.Message
			}
		}
		c.log.Warn("console: adding a source failed", "source", in.Name, "kind", in.Kind, "errorType", ae.Type)
		return c.sourcesView(w, r, rq, wz, http.StatusUnprocessableEntity)
	}
	s := out.Source
	c.log.Info("console: source added", "source", s.Name, "id", s.SourceID)
	return c.flashTo(w, r, rq, back(wz, "sources", "/sources"), flash{Kind: "ok", Target: "source-" + s.SourceID,
		Message: fmt.Sprintf("Added %s: the connector logged in to %s as %s.", s.Name, s.URL, s.User)})
}

// errorField places a source's error: next to the member the API names,
// else a refused login next to the password, an unreachable host next to
// the URL, a taken name next to the name.
func errorField(e *api.Error) string {
	msg := strings.ToLower(e.Message)
	switch {
	case e.Field != "":
		return e.Field
	case e.Type == api.ErrUntrustedCertificate:
		return "thumbprint"
	case strings.Contains(msg, source.ErrAuth.Error()):
		return "password"
	case e.Type == api.ErrSourceUnavailable:
		return "url"
	case strings.Contains(msg, "name"):
		return "name"
	case strings.Contains(msg, "url"):
		return "url"
	}
	return ""
}

// thumbprintConfirmed fails the form when the user sends back a
// thumbprint the connector offered without ticking the box that accepts
// it.
func thumbprintConfirmed(f *form) {
	offered := f.Get("offered_thumbprint")
	if offered != "" && strings.EqualFold(offered, f.Get("thumbprint")) && !f.On("thumbprint_ok") {
		f.fail("thumbprint_ok", "tick this box to accept the certificate, after comparing the thumbprints")
	}
}

func (c *Console) sourceTest(w http.ResponseWriter, r *http.Request, rq *request) error {
	wz := rq.form.Get("wizard") != ""
	to := "/sources"
	if wz {
		to = "/wizard/sources"
	}
	s, err := c.findSource(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	out, err := c.svc.TestSource(r.Context(), &api.SourceRef{Source: s.SourceID})
	if err != nil {
		return err
	}
	f := flash{Kind: "ok", Target: "source-" + out.Source.SourceID,
		Message: fmt.Sprintf("Connection test passed: logged in to %s in %s.", out.Source.URL, seconds(out.LatencySeconds))}
	if !out.Reachable {
		f.Kind, f.Message = "error", "Connection test failed: "+out.Message
	}
	return c.flashTo(w, r, rq, to, f)
}

func (c *Console) sourceRemovePage(w http.ResponseWriter, r *http.Request, rq *request) error {
	s, err := c.findSource(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	v := &view{Title: "Remove source " + s.Name, Nav: "sources"}
	return c.render(w, r, rq, http.StatusOK, v, sourceRemovePage(v, s))
}

func (c *Console) sourceRemove(w http.ResponseWriter, r *http.Request, rq *request) error {
	s, err := c.findSource(r, r.PathValue("id"))
	if err != nil {
		return err
	}
	if _, err := c.svc.RemoveSource(r.Context(), &api.SourceRef{Source: s.SourceID}); err != nil {
		return err
	}
	c.log.Info("console: source removed", "source", s.Name, "id", s.SourceID)
	return c.flashTo(w, r, rq, "/sources", flash{Kind: "ok", Message: "Removed source " + s.Name + " and its servers from the catalog."})
}

// findSource finds a source by its id: the console's URLs name objects by
// id, never by a name a user chose.
func (c *Console) findSource(r *http.Request, id string) (api.Source, error) {
	out, err := c.svc.ListSources(r.Context(), &api.ListSourcesInput{})
	if err != nil {
		return api.Source{}, err
	}
	for _, s := range out.Sources {
		if s.SourceID == id {
			return s, nil
		}
	}
	return api.Source{}, &api.Error{Type: "NotFound", Message: fmt.Sprintf("no source with id %q: it may have been removed", id), Status: http.StatusNotFound}
}

// kindLabel names a kind in words.
func kindLabel(kind string) string {
	if k, ok := findKind(kind); ok {
		return k.Label
	}
	return kind
}

// kindField is the select of the source kinds.
func kindField(f *form) fieldView {
	v := field(f, "kind", "Kind", "select")
	for _, k := range sourceKinds {
		v.Options = append(v.Options, option{Value: k.Kind, Label: k.Label, Selected: k.Kind == v.Value})
	}
	return v
}
