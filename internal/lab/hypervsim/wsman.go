package hypervsim

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/rehost/rehost/internal/lab/diskwrite"
	"github.com/rehost/rehost/internal/lab/hvdisk"
	"github.com/rehost/rehost/pkg/source/hyperv"
)

// WS-Management and WinRM shell names.
const (
	nsShell         = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
	actionCreate    = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
	actionDelete    = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
	actionCommand   = nsShell + "/Command"
	actionReceive   = nsShell + "/Receive"
	actionSignal    = nsShell + "/Signal"
	resourceCmd     = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell/cmd"
	stateDone       = nsShell + "/CommandState/Done"
	stateRunning    = nsShell + "/CommandState/Running"
	signalTerminate = nsShell + "/signal/terminate"
)

// server is one node's WinRM HTTPS listener.
type server struct {
	sim  *Sim
	node string
	ts   *httptest.Server
	cert []byte // DER

	mu     sync.Mutex
	shells map[string]*shell
}

type shell struct {
	commands map[string]*command
}

type command struct {
	stdout, stderr []byte
	exit           int
	done           chan struct{}
	sent           bool
}

// conn is the authentication state of one TCP connection: NTLM
// authenticates the connection, not the request.
type conn struct {
	mu        sync.Mutex
	challenge *[8]byte
	user      string
}

type connKey struct{}

func newServer(sim *Sim, node string) (*server, error) {
	s := &server{sim: sim, node: node, shells: map[string]*shell{}}
	cert, der, err := selfSigned(node)
	if err != nil {
		return nil, err
	}
	s.cert = der
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	s.ts.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.ts.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connKey{}, &conn{})
	}
	s.ts.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are the tests' point
	s.ts.StartTLS()
	return s, nil
}

func selfSigned(node string) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: node},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{node, "localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}))
	return cert, der, err
}

// thumbprint is the SHA-256 of the certificate, as AA:BB:… .
func (s *server) thumbprint() string {
	sum := sha256.Sum256(s.cert)
	var parts []string
	for _, b := range sum {
		parts = append(parts, fmt.Sprintf("%02X", b))
	}
	return strings.Join(parts, ":")
}

func (s *server) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == writePath {
		diskwrite.Handler(s.sim.User(), s.sim.Password(), s.sim.writable).ServeHTTP(w, r)
		return
	}
	if r.URL.Path != "/wsman" || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	if !strings.HasPrefix(r.Header.Get("Content-Type"), "application/soap+xml") {
		s.sim.violation("request without a SOAP content type: %q", r.Header.Get("Content-Type"))
		http.Error(w, "unsupported media type", http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return
	}
	if !s.authenticate(w, r) {
		return
	}
	env, err := parseEnvelope(body)
	if err != nil {
		s.sim.violation("malformed envelope: %v", err)
		s.fault(w, "w:InvalidMessageInformationHeader", err.Error())
		return
	}
	s.sim.count("wsman:" + env.action())
	if env.Header.ResourceURI != resourceCmd {
		s.fault(w, "w:DestinationUnreachable", "unknown resource "+env.Header.ResourceURI)
		return
	}
	switch env.action() {
	case "Create":
		s.create(w, env)
	case "Command":
		s.command(w, env)
	case "Receive":
		s.receive(w, r.Context(), env)
	case "Signal":
		s.signal(w, env)
	case "Delete":
		s.delete(w, env)
	default:
		s.sim.violation("unexpected action %s", env.Header.Action)
		s.fault(w, "a:ActionNotSupported", "action not supported: "+env.Header.Action)
	}
}

// authenticate admits a request on a connection NTLM authenticated, or
// with valid Basic credentials when the server allows Basic; otherwise it
// answers 401 and the next step of the NTLM handshake.
func (s *server) authenticate(w http.ResponseWriter, r *http.Request) bool {
	c, _ := r.Context().Value(connKey{}).(*conn)
	c.mu.Lock()
	defer c.mu.Unlock()
	offer := func(extra string) {
		if extra != "" {
			w.Header().Add("WWW-Authenticate", extra)
		} else {
			w.Header().Add("WWW-Authenticate", "Negotiate")
			if s.sim.opts.AllowBasic {
				w.Header().Add("WWW-Authenticate", `Basic realm="WSMAN"`)
			}
		}
		w.WriteHeader(http.StatusUnauthorized)
	}
	h := r.Header.Get("Authorization")
	scheme, data, _ := strings.Cut(h, " ")
	switch {
	case h == "" && c.user != "":
		return true
	case h == "":
		offer("")
		return false
	case strings.EqualFold(scheme, "Basic"):
		u, p, ok := r.BasicAuth()
		if !s.sim.opts.AllowBasic {
			s.sim.authEvent("basic refused: not allowed")
			offer("")
			return false
		}
		if !ok || !strings.EqualFold(stripDomain(u), stripDomain(s.sim.user)) || p != s.sim.password {
			s.sim.authEvent("basic refused: bad credentials")
			offer("")
			return false
		}
		s.sim.authEvent("basic ok")
		return true
	case strings.EqualFold(scheme, "Negotiate") || strings.EqualFold(scheme, "NTLM"):
		msg, err := base64.StdEncoding.DecodeString(strings.TrimSpace(data))
		if err != nil {
			offer("")
			return false
		}
		switch ntlmType(msg) {
		case 1:
			ch, server := challenge(s.sim.domain, s.node)
			c.challenge, c.user = &server, ""
			offer(scheme + " " + base64.StdEncoding.EncodeToString(ch))
			return false
		case 3:
			if c.challenge == nil {
				s.sim.authEvent("ntlm refused: authenticate without challenge")
				offer("")
				return false
			}
			name, err := verify(msg, *c.challenge, s.sim.user, s.sim.password)
			c.challenge = nil
			if err != nil {
				s.sim.authEvent("ntlm refused: " + err.Error())
				offer("")
				return false
			}
			c.user = name
			s.sim.authEvent("ntlm ok")
			return true
		}
	}
	offer("")
	return false
}

func stripDomain(u string) string {
	if _, n, ok := strings.Cut(u, `\`); ok {
		return n
	}
	n, _, _ := strings.Cut(u, "@")
	return n
}

// envelope is the part of a WS-Management request the server reads.
type envelope struct {
	Header struct {
		Action      string `xml:"Action"`
		ResourceURI string `xml:"ResourceURI"`
		MessageID   string `xml:"MessageID"`
		Selectors   []struct {
			Name  string `xml:"Name,attr"`
			Value string `xml:",chardata"`
		} `xml:"SelectorSet>Selector"`
	} `xml:"Header"`
	Body struct {
		Command *struct {
			Command   string   `xml:"Command"`
			Arguments []string `xml:"Arguments"`
		} `xml:"CommandLine"`
		Receive *struct {
			Stream struct {
				CommandID string `xml:"CommandId,attr"`
			} `xml:"DesiredStream"`
		} `xml:"Receive"`
		Signal *struct {
			CommandID string `xml:"CommandId,attr"`
			Code      string `xml:"Code"`
		} `xml:"Signal"`
		Shell *struct {
			InputStreams  string `xml:"InputStreams"`
			OutputStreams string `xml:"OutputStreams"`
		} `xml:"Shell"`
	} `xml:"Body"`
}

func parseEnvelope(b []byte) (*envelope, error) {
	var e envelope
	if err := xml.Unmarshal(b, &e); err != nil {
		return nil, err
	}
	if e.Header.Action == "" || e.Header.MessageID == "" {
		return nil, fmt.Errorf("no Action or MessageID header")
	}
	return &e, nil
}

func (e *envelope) action() string {
	switch e.Header.Action {
	case actionCreate:
		return "Create"
	case actionDelete:
		return "Delete"
	case actionCommand:
		return "Command"
	case actionReceive:
		return "Receive"
	case actionSignal:
		return "Signal"
	}
	return e.Header.Action
}

func (e *envelope) shellID() string {
	for _, s := range e.Header.Selectors {
		if s.Name == "ShellId" {
			return s.Value
		}
	}
	return ""
}

func (s *server) reply(w http.ResponseWriter, env *envelope, action, body string) {
	w.Header().Set("Content-Type", "application/soap+xml;charset=UTF-8")
	fmt.Fprintf(w, `<s:Envelope xml:lang="en-US" xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:x="http://schemas.xmlsoap.org/ws/2004/09/transfer" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd" xmlns:rsp="%s" xmlns:p="http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd">`+
		`<s:Header><a:Action>%s</a:Action><a:MessageID>uuid:%s</a:MessageID><a:To>http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous</a:To><a:RelatesTo>%s</a:RelatesTo></s:Header><s:Body>%s</s:Body></s:Envelope>`,
		nsShell, action, hvdisk.NewGUID(), xmlText(env.Header.MessageID), body)
}

// fault answers a WS-Management fault as WinRM does (HTTP 500).
func (s *server) fault(w http.ResponseWriter, code, text string) {
	w.Header().Set("Content-Type", "application/soap+xml;charset=UTF-8")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintf(w, `<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" xmlns:a="http://schemas.xmlsoap.org/ws/2004/08/addressing" xmlns:w="http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd">`+
		`<s:Header><a:Action>http://schemas.dmtf.org/wbem/wsman/1/wsman/fault</a:Action></s:Header><s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>%s</s:Value></s:Subcode></s:Code>`+
		`<s:Reason><s:Text xml:lang="en-US">%s</s:Text></s:Reason></s:Fault></s:Body></s:Envelope>`, code, xmlText(text))
}

func xmlText(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

func (s *server) create(w http.ResponseWriter, env *envelope) {
	if env.Body.Shell == nil || !strings.Contains(env.Body.Shell.OutputStreams, "stdout") {
		s.fault(w, "w:SchemaValidationError", "Create needs a Shell with output streams")
		return
	}
	id := strings.ToUpper(hvdisk.NewGUID().String())
	s.mu.Lock()
	s.shells[id] = &shell{commands: map[string]*command{}}
	s.mu.Unlock()
	s.reply(w, env, actionCreate+"Response", fmt.Sprintf(`<x:ResourceCreated><a:Address>https://%s/wsman</a:Address><a:ReferenceParameters><w:ResourceURI>%s</w:ResourceURI>`+
		`<w:SelectorSet><w:Selector Name="ShellId">%s</w:Selector></w:SelectorSet></a:ReferenceParameters></x:ResourceCreated>`+
		`<rsp:Shell><rsp:ShellId>%s</rsp:ShellId><rsp:ResourceUri>%s</rsp:ResourceUri><rsp:InputStreams>stdin</rsp:InputStreams><rsp:OutputStreams>stdout stderr</rsp:OutputStreams></rsp:Shell>`,
		s.node, resourceCmd, id, id, resourceCmd))
}

func (s *server) shell(w http.ResponseWriter, env *envelope) *shell {
	s.mu.Lock()
	defer s.mu.Unlock()
	sh := s.shells[env.shellID()]
	if sh == nil {
		s.fault(w, "w:InvalidSelectors", "The request for the Windows Remote Shell with ShellId "+env.shellID()+" failed because the shell was not found on the server.")
	}
	return sh
}

// command decodes the command line, checks it is one of rehost's scripts
// and runs it against the simulated host in the background, as WinRS runs
// a process that Receive then reads.
func (s *server) command(w http.ResponseWriter, env *envelope) {
	sh := s.shell(w, env)
	if sh == nil {
		return
	}
	if env.Body.Command == nil {
		s.fault(w, "w:SchemaValidationError", "Command needs a CommandLine")
		return
	}
	line := strings.TrimSpace(env.Body.Command.Command)
	if len(line) > hyperv.MaxCommandLine {
		s.sim.violation("command line of %d characters exceeds cmd.exe's %d", len(line), hyperv.MaxCommandLine)
	}
	cmd := &command{done: make(chan struct{})}
	id := strings.ToUpper(hvdisk.NewGUID().String())
	s.mu.Lock()
	sh.commands[id] = cmd
	s.mu.Unlock()
	go func() {
		defer close(cmd.done)
		out, errOut, code := s.sim.execute(s.node, line)
		s.mu.Lock()
		cmd.stdout, cmd.stderr, cmd.exit = out, errOut, code
		s.mu.Unlock()
	}()
	s.reply(w, env, actionCommand+"Response", `<rsp:CommandResponse><rsp:CommandId>`+id+`</rsp:CommandId></rsp:CommandResponse>`)
}

// receive answers the command's output once it is done, or, after the
// operation timeout, a TimedOut fault the client polls again on.
func (s *server) receive(w http.ResponseWriter, ctx context.Context, env *envelope) {
	sh := s.shell(w, env)
	if sh == nil || env.Body.Receive == nil {
		return
	}
	id := env.Body.Receive.Stream.CommandID
	s.mu.Lock()
	cmd := sh.commands[id]
	s.mu.Unlock()
	if cmd == nil {
		s.fault(w, "w:InvalidParameter", "unknown command "+id)
		return
	}
	select {
	case <-cmd.done:
	case <-time.After(s.sim.opts.OperationTimeout):
		s.sim.count("wsman:ReceiveTimedOut")
		s.fault(w, "w:TimedOut", "The WS-Management service cannot complete the operation within the time specified in OperationTimeout.")
		return
	case <-ctx.Done():
		return
	}
	s.mu.Lock()
	var streams strings.Builder
	if !cmd.sent {
		// Output in chunks, as WinRS sends it.
		for _, st := range []struct {
			name string
			b    []byte
		}{{"stdout", cmd.stdout}, {"stderr", cmd.stderr}} {
			for off := 0; off < len(st.b); off += 8192 {
				fmt.Fprintf(&streams, `<rsp:Stream Name="%s" CommandId="%s">%s</rsp:Stream>`, st.name, id,
					base64.StdEncoding.EncodeToString(st.b[off:min(off+8192, len(st.b))]))
			}
		}
		cmd.sent = true
	}
	exit := cmd.exit
	s.mu.Unlock()
	s.reply(w, env, actionReceive+"Response", fmt.Sprintf(`<rsp:ReceiveResponse>%s<rsp:CommandState CommandId="%s" State="%s"><rsp:ExitCode>%d</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse>`,
		streams.String(), id, stateDone, exit))
}

func (s *server) signal(w http.ResponseWriter, env *envelope) {
	sh := s.shell(w, env)
	if sh == nil || env.Body.Signal == nil {
		return
	}
	if env.Body.Signal.Code != signalTerminate {
		s.sim.violation("signal %q", env.Body.Signal.Code)
	}
	s.mu.Lock()
	delete(sh.commands, env.Body.Signal.CommandID)
	s.mu.Unlock()
	s.reply(w, env, actionSignal+"Response", `<rsp:SignalResponse/>`)
}

func (s *server) delete(w http.ResponseWriter, env *envelope) {
	s.mu.Lock()
	_, ok := s.shells[env.shellID()]
	delete(s.shells, env.shellID())
	s.mu.Unlock()
	if !ok {
		s.fault(w, "w:InvalidSelectors", "unknown shell "+env.shellID())
		return
	}
	s.reply(w, env, actionDelete+"Response", "")
}

// openShells counts shells not deleted.
func (s *server) openShells() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.shells)
}

// execute runs a command line: it must be rehost's loader around one of
// its scripts; the answer is the JSON the prelude writes, or what cmd.exe
// writes on stderr of a command it does not know.
func (sim *Sim) execute(node, line string) (stdout, stderr []byte, exit int) {
	text, err := hyperv.DecodeCommand(line)
	if err != nil {
		sim.violation("command is not a rehost script: %v", err)
		return nil, []byte("'" + line[:min(40, len(line))] + "' is not recognized as an internal or external command,\r\noperable program or batch file.\r\n"), 1
	}
	name, args, err := hyperv.ParseScript(text)
	if err != nil {
		sim.violation("script text: %v", err)
		return answer(nil, &psError{"ParserError", "hypervsim", err.Error()}), nil, 1
	}
	sim.count("script:" + name)
	if d := time.Duration(sim.delay.Load()); d > 0 {
		if only, _ := sim.delayed.Load().(string); only == "" || only == name {
			time.Sleep(d)
		}
	}
	res, err := sim.Host.run(node, name, args)
	if err != nil {
		return answer(nil, err), nil, 1
	}
	return answer(res, nil), nil, 0
}

// answer writes what Write-RehostResult writes.
func answer(res any, err error) []byte {
	var o any
	if err != nil {
		pe, ok := err.(*psError)
		if !ok {
			pe = &psError{"NotSpecified", "hypervsim", err.Error()}
		}
		o = map[string]any{"ok": false, "error": map[string]any{"category": pe.category, "id": pe.id, "message": pe.message}}
	} else {
		if res == nil {
			res = []any{}
		}
		o = map[string]any{"ok": true, "result": res}
	}
	b, _ := json.Marshal(o)
	return b
}
