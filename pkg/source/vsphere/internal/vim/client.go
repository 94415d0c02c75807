// Package vim speaks the part of the vSphere Web Services API (SOAP, the
// vim25 namespace) the vCenter source uses: the session, the property
// collector, snapshots and their tasks, NFC export leases and changed
// block tracking.
//
// It is not govmomi on purpose: govmomi's vim25/types registers every type
// of the API (7,000 of them) in package initialisers, which costs the
// product binary 9 MB whatever part of the API it calls. Requests are
// written element by element in the WSDL's order; answers are read as a
// tree (Node) of which the caller reads what it needs. Its tests are the
// vCenter source's, against govmomi's simulator over HTTPS.
package vim

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Ref is a managed object reference: vCenter's handle of an object.
type Ref struct{ Type, Value string }

func (r Ref) String() string { return r.Type + ":" + r.Value }

// IsZero reports whether r names nothing.
func (r Ref) IsZero() bool { return r.Value == "" }

// ServiceContent are the managers a session works with.
type ServiceContent struct {
	RootFolder, PropertyCollector, ViewManager, SearchIndex, SessionManager Ref
	// APIVersion is the server's API version ("8.0.3.0").
	APIVersion string
}

// Fault is an error vCenter answered: a SOAP fault, or the error of a task
// or lease (a LocalizedMethodFault).
type Fault struct {
	// Name is the fault's type ("InvalidLogin", "NotAuthenticated").
	Name    string
	Message string
}

func (f *Fault) Error() string {
	if f.Name == "" {
		return f.Message
	}
	if f.Message == "" {
		return f.Name
	}
	return f.Name + ": " + f.Message
}

// FaultName is the vSphere fault type err carries ("" for none).
func FaultName(err error) string {
	var f *Fault
	if errors.As(err, &f) {
		return f.Name
	}
	return ""
}

// Client is a session with one vCenter (or ESXi) SDK endpoint. Its methods
// are safe for concurrent use.
type Client struct {
	// URL is the SDK endpoint, https://host/sdk.
	URL *url.URL
	// HTTP carries the calls and the downloads; its cookie jar holds the
	// session cookie.
	HTTP    *http.Client
	Content ServiceContent

	version string

	mu       sync.Mutex // serialises logging in
	user     string
	password string

	lastUse atomic.Int64 // unix nanoseconds of the last call
	stop    chan struct{}
	stopped sync.Once
}

// Connect reads the service content of the endpoint u over hc (whose
// transport verifies the server's certificate; a cookie jar is added if it
// has none).
func Connect(ctx context.Context, u *url.URL, hc *http.Client) (*Client, error) {
	c := &Client{URL: u, HTTP: hc, version: "9.1.0.0", stop: make(chan struct{})}
	if err := c.ensureJar(); err != nil {
		return nil, err
	}
	n, err := c.Call(ctx, "RetrieveServiceContent", Ref{Type: "ServiceInstance", Value: "ServiceInstance"})
	if err != nil {
		return nil, err
	}
	sc := n.Child("returnval")
	c.Content = ServiceContent{
		RootFolder: sc.Child("rootFolder").Ref(), PropertyCollector: sc.Child("propertyCollector").Ref(),
		ViewManager: sc.Child("viewManager").Ref(), SearchIndex: sc.Child("searchIndex").Ref(),
		SessionManager: sc.Child("sessionManager").Ref(), APIVersion: strings.TrimSpace(sc.Path("about", "apiVersion").String()),
	}
	if c.Content.PropertyCollector.IsZero() || c.Content.SessionManager.IsZero() {
		return nil, fmt.Errorf("%s answered a service content without a property collector or session manager: is it a vCenter SDK endpoint?", u.Redacted())
	}
	if c.Content.APIVersion != "" {
		c.version = c.Content.APIVersion
	}
	return c, nil
}

// Login logs in; a session lost later (vCenter restarted, the session
// expired) is logged in again once before the call that found it lost is
// retried. While logged in, an idle session is kept alive by a cheap call
// every keepalive interval.
func (c *Client) Login(ctx context.Context, user, password string, keepalive time.Duration) error {
	c.mu.Lock()
	c.user, c.password = user, password
	c.mu.Unlock()
	if err := c.login(ctx); err != nil {
		return err
	}
	if keepalive > 0 {
		go c.keepAlive(keepalive)
	}
	return nil
}

func (c *Client) login(ctx context.Context) error {
	c.mu.Lock()
	user, password := c.user, c.password
	c.mu.Unlock()
	_, err := c.call(ctx, "Login", c.Content.SessionManager, Str("userName", user), Str("password", password))
	return err
}

// Logout ends the session and its keepalive.
func (c *Client) Logout(ctx context.Context) error {
	c.stopped.Do(func() { close(c.stop) })
	_, err := c.call(ctx, "Logout", c.Content.SessionManager)
	return err
}

func (c *Client) keepAlive(every time.Duration) {
	t := time.NewTicker(every / 4)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
			if time.Since(time.Unix(0, c.lastUse.Load())) < every {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			c.Call(ctx, "CurrentTime", Ref{Type: "ServiceInstance", Value: "ServiceInstance"})
			cancel()
		}
	}
}

// Call calls method on this with the arguments (in the WSDL's order) and
// returns the answer's element (<MethodResponse>, whose returnval children
// hold what it returned). A fault is a *Fault. A call that finds the
// session lost logs in again and is made once more.
func (c *Client) Call(ctx context.Context, method string, this Ref, args ...E) (*Node, error) {
	n, err := c.call(ctx, method, this, args...)
	if FaultName(err) != "NotAuthenticated" || method == "Login" {
		return n, err
	}
	c.mu.Lock()
	loggedIn := c.user != ""
	c.mu.Unlock()
	if !loggedIn {
		return n, err
	}
	if lerr := c.login(ctx); lerr != nil {
		return nil, fmt.Errorf("%w (and logging in again failed: %v)", err, lerr)
	}
	return c.call(ctx, method, this, args...)
}

// maxAnswer bounds an answer read into memory (an inventory of thousands
// of VMs is a few megabytes).
const maxAnswer = 256 << 20

func (c *Client) call(ctx context.Context, method string, this Ref, args ...E) (*Node, error) {
	c.lastUse.Store(time.Now().UnixNano())
	var b bytes.Buffer
	b.WriteString(xml.Header)
	b.WriteString(`<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="` + xsiNS + `">`)
	b.WriteString(`<soapenv:Body><` + method + ` xmlns="urn:vim25">`)
	Mor("_this", this).write(&b)
	for _, a := range args {
		a.write(&b)
	}
	b.WriteString(`</` + method + `></soapenv:Body></soapenv:Envelope>`)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.URL.String(), &b)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
	req.Header.Set("SOAPAction", "urn:vim25/"+c.version)
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusInternalServerError {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s %s: %s: %s", method, c.URL.Redacted(), resp.Status, strings.TrimSpace(string(msg)))
	}
	body, err := readBody(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s: read the answer of %s: %w", method, c.URL.Redacted(), err)
	}
	if f := body.Child("Fault"); f != nil {
		return nil, soapFault(f)
	}
	res := body.Child(method + "Response")
	if res == nil {
		return nil, fmt.Errorf("%s: %s answered no %sResponse", method, c.URL.Redacted(), method)
	}
	return res, nil
}

// soapFault reads a SOAP fault: its message, and the vSphere fault type in
// its detail (<InvalidLoginFault xsi:type="InvalidLogin"/>).
func soapFault(f *Node) *Fault {
	out := &Fault{Message: strings.TrimSpace(f.Child("faultstring").String())}
	if d := f.Child("detail"); d != nil && len(d.Kids) > 0 {
		k := d.Kids[0]
		out.Name = k.Type()
		if out.Name == "" {
			out.Name = strings.TrimSuffix(k.XMLName.Local, "Fault")
		}
	}
	if out.Name == "" {
		out.Name = strings.TrimSpace(f.Child("faultcode").String())
	}
	return out
}

// MethodFault reads a LocalizedMethodFault (a task's or a lease's error).
func MethodFault(n *Node) *Fault {
	if n == nil {
		return nil
	}
	f := &Fault{Name: n.Child("fault").Type(), Message: strings.TrimSpace(n.Child("localizedMessage").String())}
	if f.Message == "" {
		f.Message = strings.TrimSpace(n.Path("fault", "faultMessage", "message").String())
	}
	return f
}

func (c *Client) ensureJar() error {
	if c.HTTP.Jar != nil {
		return nil
	}
	jar, err := cookiejar.New(nil)
	if err != nil {
		return err
	}
	c.HTTP.Jar = jar
	return nil
}

// Download GETs a file the server offers (an NFC lease's disk) in the
// session.
func (c *Client) Download(ctx context.Context, u *url.URL) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("download %s: %s", u.Redacted(), resp.Status)
	}
	return resp.Body, nil
}

// E is an element of a request: a value, a managed object reference, or a
// structure of elements in the WSDL's order.
type E struct {
	Name string
	// Type is the xsi:type of a value of a derived type ("TraversalSpec"
	// where a SelectionSpec is expected).
	Type string
	// RefType is the type attribute of a managed object reference.
	RefType string
	Text    string
	Kids    []E
}

// Str is a string element; Bool, Int, Mor and El the other kinds.
func Str(name, v string) E                { return E{Name: name, Text: v} }
func Bool(name string, v bool) E          { return E{Name: name, Text: strconv.FormatBool(v)} }
func Int(name string, v int64) E          { return E{Name: name, Text: strconv.FormatInt(v, 10)} }
func Mor(name string, r Ref) E            { return E{Name: name, RefType: r.Type, Text: r.Value} }
func El(name string, kids ...E) E         { return E{Name: name, Kids: kids} }
func Typed(name, typ string, kids ...E) E { return E{Name: name, Type: typ, Kids: kids} }

func (e E) write(b *bytes.Buffer) {
	b.WriteString("<" + e.Name)
	if e.Type != "" {
		b.WriteString(` xsi:type="` + e.Type + `"`)
	}
	if e.RefType != "" {
		b.WriteString(` type="`)
		xml.EscapeText(b, []byte(e.RefType))
		b.WriteString(`"`)
	}
	b.WriteString(">")
	xml.EscapeText(b, []byte(e.Text))
	for _, k := range e.Kids {
		k.write(b)
	}
	b.WriteString("</" + e.Name + ">")
}
