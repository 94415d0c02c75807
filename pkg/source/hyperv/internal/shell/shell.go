// Package shell runs one command in a WinRM cmd shell over WS-Management:
// Create a shell, Command, Receive until the command is done, Signal
// terminate, Delete the shell. The envelopes are written and read with
// encoding/xml; sending them (TLS, authentication, HTTP faults) is the
// caller's Post.
package shell

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// WS-Management, WS-Transfer and WinRM shell names.
const (
	nsSoap    = "http://www.w3.org/2003/05/soap-envelope"
	nsAddr    = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
	nsWSMan   = "http://schemas.dmtf.org/wbem/wsman/1/wsman.xsd"
	nsMSWSM   = "http://schemas.microsoft.com/wbem/wsman/1/wsman.xsd"
	nsShell   = "http://schemas.microsoft.com/wbem/wsman/1/windows/shell"
	anonymous = "http://schemas.xmlsoap.org/ws/2004/08/addressing/role/anonymous"

	// ResourceCmd is the resource of a cmd.exe shell.
	ResourceCmd = nsShell + "/cmd"

	actionCreate  = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Create"
	actionDelete  = "http://schemas.xmlsoap.org/ws/2004/09/transfer/Delete"
	actionCommand = nsShell + "/Command"
	actionReceive = nsShell + "/Receive"
	actionSignal  = nsShell + "/Signal"
	actionFault   = "http://schemas.dmtf.org/wbem/wsman/1/wsman/fault"

	stateDone       = nsShell + "/CommandState/Done"
	signalTerminate = nsShell + "/signal/terminate"
)

// ErrTimedOut is what Post wraps when the host answered a wsman TimedOut
// fault: the operation timeout passed without output, and Receive asks
// again.
var ErrTimedOut = errors.New("the ws-management operation timed out")

// Client sends the envelopes of one command run.
type Client struct {
	// URL is the listener's address, https://host:port/wsman.
	URL string
	// Post sends one envelope and returns the body of a 200 answer. It
	// turns any other answer into an error, wrapping ErrTimedOut for a
	// TimedOut fault. It must honour ctx.
	Post func(ctx context.Context, envelope []byte) ([]byte, error)
	// OperationTimeout is how long the host holds a Receive without
	// output (WinRM's default is 60 s).
	OperationTimeout time.Duration
	// MaxEnvelopeSize bounds the size of the host's answers, in bytes.
	MaxEnvelopeSize int
	// Locale is the language of the host's messages, en-US if empty.
	Locale string
}

// cleanupTimeout bounds the Signal and the Delete that end a run.
const cleanupTimeout = 30 * time.Second

// Run runs command line cmd in a new shell and returns its output and
// exit code. The shell is deleted whatever happens, even when ctx is
// cancelled (with a context of its own), so that it does not linger on
// the host until WinRM's idle timeout.
func (c *Client) Run(ctx context.Context, cmd string) (stdout, stderr []byte, exit int, err error) {
	var created response
	if err := c.call(ctx, actionCreate, nil, []option{{"WINRS_NOPROFILE", "FALSE"}, {"WINRS_CODEPAGE", "65001"}},
		body{Shell: &shellBody{InputStreams: "stdin", OutputStreams: "stdout stderr"}}, &created); err != nil {
		return nil, nil, 0, fmt.Errorf("create a shell: %w", err)
	}
	shellID := strings.TrimSpace(created.Body.Shell.ShellID)
	if shellID == "" {
		return nil, nil, 0, errors.New("create a shell: the answer names no ShellId")
	}
	sel := []selector{{Name: "ShellId", Value: shellID}}
	cleanup := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	}
	defer func() {
		cctx, cancel := cleanup()
		defer cancel()
		// The answer is in hand or the error says why not; a shell that
		// could not be deleted expires on the host's idle timeout.
		_ = c.call(cctx, actionDelete, sel, nil, body{}, nil)
	}()

	var started response
	if err := c.call(ctx, actionCommand, sel, []option{{"WINRS_CONSOLEMODE_STDIN", "TRUE"}, {"WINRS_SKIP_CMD_SHELL", "FALSE"}},
		body{CommandLine: &commandLine{Command: cmd}}, &started); err != nil {
		return nil, nil, 0, fmt.Errorf("start the command: %w", err)
	}
	commandID := strings.TrimSpace(started.Body.CommandResponse.CommandID)
	if commandID == "" {
		return nil, nil, 0, errors.New("start the command: the answer names no CommandId")
	}
	defer func() {
		cctx, cancel := cleanup()
		defer cancel()
		_ = c.call(cctx, actionSignal, sel, nil, body{Signal: &signal{CommandID: commandID, Code: signalTerminate}}, nil)
	}()

	var out, errOut bytes.Buffer
	for {
		var r response
		err := c.call(ctx, actionReceive, sel, nil,
			body{Receive: &receive{DesiredStream: desiredStream{CommandID: commandID, Streams: "stdout stderr"}}}, &r)
		if err != nil {
			if ctx.Err() == nil && (errors.Is(err, ErrTimedOut) || isNetTimeout(err)) {
				continue
			}
			return out.Bytes(), errOut.Bytes(), 0, fmt.Errorf("receive the output: %w", err)
		}
		rr := r.Body.ReceiveResponse
		for _, s := range rr.Streams {
			if s.CommandID != "" && s.CommandID != commandID {
				continue
			}
			b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s.Data))
			if err != nil {
				return out.Bytes(), errOut.Bytes(), 0, fmt.Errorf("receive the output: stream %s: %w", s.Name, err)
			}
			switch s.Name {
			case "stdout":
				out.Write(b)
			case "stderr":
				errOut.Write(b)
			}
		}
		if rr.State.State == stateDone {
			if t := strings.TrimSpace(rr.State.ExitCode); t != "" {
				if exit, err = strconv.Atoi(t); err != nil {
					return out.Bytes(), errOut.Bytes(), 0, fmt.Errorf("receive the output: exit code %q: %w", t, err)
				}
			}
			return out.Bytes(), errOut.Bytes(), exit, nil
		}
	}
}

func isNetTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// call sends one request and decodes the answer into into (nil: the
// answer is only checked to be the expected action's).
func (c *Client) call(ctx context.Context, action string, sel []selector, opts []option, b body, into *response) error {
	env, err := c.envelope(action, sel, opts, b)
	if err != nil {
		return err
	}
	ans, err := c.Post(ctx, env)
	if err != nil {
		return err
	}
	var r response
	if err := xml.Unmarshal(ans, &r); err != nil {
		return fmt.Errorf("parse the answer to %s: %w", short(action), err)
	}
	switch got := strings.TrimSpace(r.Header.Action); got {
	case action + "Response":
	case actionFault:
		return fmt.Errorf("the host answered %s with a fault: %s", short(action), r.Body.Fault.text())
	default:
		return fmt.Errorf("the host answered %s with action %q", short(action), got)
	}
	if into != nil {
		*into = r
	}
	return nil
}

func short(action string) string { return action[strings.LastIndex(action, "/")+1:] }

func (c *Client) envelope(action string, sel []selector, opts []option, b body) ([]byte, error) {
	id, err := messageID()
	if err != nil {
		return nil, err
	}
	locale := c.Locale
	if locale == "" {
		locale = "en-US"
	}
	e := envelope{
		S: nsSoap, A: nsAddr, W: nsWSMan, P: nsMSWSM, Rsp: nsShell,
		Header: header{
			To:               c.URL,
			ReplyTo:          mustUnderstand{Value: anonymous, MU: "true"},
			MaxEnvelopeSize:  mustUnderstand{Value: strconv.Itoa(c.MaxEnvelopeSize), MU: "true"},
			OperationTimeout: duration(c.OperationTimeout),
			MessageID:        id,
			Locale:           lang{Lang: locale, MU: "false"},
			DataLocale:       lang{Lang: locale, MU: "false"},
			Action:           mustUnderstand{Value: action, MU: "true"},
			Selectors:        sel,
			ResourceURI:      mustUnderstand{Value: ResourceCmd, MU: "true"},
			Options:          opts,
		},
		Body: b,
	}
	return xml.Marshal(e)
}

// duration is an xs:duration in whole seconds, as WinRM takes it.
func duration(d time.Duration) string {
	return "PT" + strconv.Itoa(int(d.Round(time.Second)/time.Second)) + "S"
}

func messageID() (string, error) {
	var u [16]byte
	if _, err := rand.Read(u[:]); err != nil {
		return "", err
	}
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("uuid:%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:]), nil
}

// The request: the element names carry the prefixes the envelope declares.
type envelope struct {
	XMLName xml.Name `xml:"s:Envelope"`
	S       string   `xml:"xmlns:s,attr"`
	A       string   `xml:"xmlns:a,attr"`
	W       string   `xml:"xmlns:w,attr"`
	P       string   `xml:"xmlns:p,attr"`
	Rsp     string   `xml:"xmlns:rsp,attr"`
	Header  header   `xml:"s:Header"`
	Body    body     `xml:"s:Body"`
}

type header struct {
	To               string         `xml:"a:To"`
	ReplyTo          mustUnderstand `xml:"a:ReplyTo>a:Address"`
	MaxEnvelopeSize  mustUnderstand `xml:"w:MaxEnvelopeSize"`
	OperationTimeout string         `xml:"w:OperationTimeout"`
	MessageID        string         `xml:"a:MessageID"`
	Locale           lang           `xml:"w:Locale"`
	DataLocale       lang           `xml:"p:DataLocale"`
	Action           mustUnderstand `xml:"a:Action"`
	Selectors        []selector     `xml:"w:SelectorSet>w:Selector,omitempty"`
	ResourceURI      mustUnderstand `xml:"w:ResourceURI"`
	Options          []option       `xml:"w:OptionSet>w:Option,omitempty"`
}

type mustUnderstand struct {
	MU    string `xml:"s:mustUnderstand,attr"`
	Value string `xml:",chardata"`
}

type lang struct {
	MU   string `xml:"s:mustUnderstand,attr"`
	Lang string `xml:"xml:lang,attr"`
}

type selector struct {
	Name  string `xml:"Name,attr"`
	Value string `xml:",chardata"`
}

type option struct {
	Name  string `xml:"Name,attr"`
	Value string `xml:",chardata"`
}

type body struct {
	Shell       *shellBody   `xml:"rsp:Shell,omitempty"`
	CommandLine *commandLine `xml:"rsp:CommandLine,omitempty"`
	Receive     *receive     `xml:"rsp:Receive,omitempty"`
	Signal      *signal      `xml:"rsp:Signal,omitempty"`
}

type shellBody struct {
	InputStreams  string `xml:"rsp:InputStreams"`
	OutputStreams string `xml:"rsp:OutputStreams"`
}

type commandLine struct {
	Command string `xml:"rsp:Command"`
}

type receive struct {
	DesiredStream desiredStream `xml:"rsp:DesiredStream"`
}

type desiredStream struct {
	CommandID string `xml:"CommandId,attr"`
	Streams   string `xml:",chardata"`
}

type signal struct {
	CommandID string `xml:"CommandId,attr"`
	Code      string `xml:"rsp:Code"`
}

// response is the part of an answer the client reads; names match in any
// namespace.
type response struct {
	Header struct {
		Action string `xml:"Action"`
	} `xml:"Header"`
	Body struct {
		Shell struct {
			ShellID string `xml:"ShellId"`
		} `xml:"Shell"`
		CommandResponse struct {
			CommandID string `xml:"CommandId"`
		} `xml:"CommandResponse"`
		ReceiveResponse struct {
			Streams []struct {
				Name      string `xml:"Name,attr"`
				CommandID string `xml:"CommandId,attr"`
				Data      string `xml:",chardata"`
			} `xml:"Stream"`
			State struct {
				State    string `xml:"State,attr"`
				ExitCode string `xml:"ExitCode"`
			} `xml:"CommandState"`
		} `xml:"ReceiveResponse"`
		Fault fault `xml:"Fault"`
	} `xml:"Body"`
}

type fault struct {
	Subcode string `xml:"Code>Subcode>Value"`
	Reason  string `xml:"Reason>Text"`
	Message string `xml:"Detail>WSManFault>Message"`
}

func (f fault) text() string {
	msg := strings.TrimSpace(f.Message)
	if msg == "" {
		msg = strings.TrimSpace(f.Reason)
	}
	if f.Subcode != "" {
		return strings.TrimSpace(f.Subcode) + ": " + msg
	}
	return msg
}
