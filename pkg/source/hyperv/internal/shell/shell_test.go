package shell

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"fmt"
	"strings"
	"testing"
	"time"
)

// host answers as WinRM does: the output of a command in two Receive
// answers (the first after an operation timeout), exit code 3.
type host struct {
	actions  []string
	received int
}

func (h *host) post(_ context.Context, env []byte) ([]byte, error) {
	var req struct {
		Header struct {
			Action  string `xml:"Action"`
			Timeout string `xml:"OperationTimeout"`
			Size    string `xml:"MaxEnvelopeSize"`
			Shell   string `xml:"SelectorSet>Selector"`
		} `xml:"Header"`
		Body struct {
			Command string `xml:"CommandLine>Command"`
		} `xml:"Body"`
	}
	if err := xml.Unmarshal(env, &req); err != nil {
		return nil, err
	}
	if req.Header.Timeout != "PT60S" || req.Header.Size != "153600" {
		return nil, fmt.Errorf("options %+v", req.Header)
	}
	a := short(req.Header.Action)
	h.actions = append(h.actions, a)
	if a != "Create" && req.Header.Shell != "S1" {
		return nil, fmt.Errorf("%s for shell %q", a, req.Header.Shell)
	}
	body := ""
	switch a {
	case "Create":
		body = `<rsp:Shell><rsp:ShellId>S1</rsp:ShellId></rsp:Shell>`
	case "Command":
		if req.Body.Command != `echo a&b <c>` {
			return nil, fmt.Errorf("command %q", req.Body.Command)
		}
		body = `<rsp:CommandResponse><rsp:CommandId>C1</rsp:CommandId></rsp:CommandResponse>`
	case "Receive":
		h.received++
		switch h.received {
		case 1:
			return nil, fmt.Errorf("no output yet: %w", ErrTimedOut)
		case 2:
			body = `<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="C1">` + b64("hel") + `</rsp:Stream>` +
				`<rsp:Stream Name="stderr" CommandId="C1">` + b64("warn") + `</rsp:Stream>` +
				`<rsp:CommandState CommandId="C1" State="` + nsShell + `/CommandState/Running"/></rsp:ReceiveResponse>`
		default:
			body = `<rsp:ReceiveResponse><rsp:Stream Name="stdout" CommandId="C1">` + b64("lo") + `</rsp:Stream>` +
				`<rsp:Stream Name="stdout" CommandId="C1" End="true"></rsp:Stream>` +
				`<rsp:CommandState CommandId="C1" State="` + stateDone + `"><rsp:ExitCode>3</rsp:ExitCode></rsp:CommandState></rsp:ReceiveResponse>`
		}
	}
	return []byte(`<s:Envelope xmlns:s="` + nsSoap + `" xmlns:a="` + nsAddr + `" xmlns:rsp="` + nsShell + `"><s:Header><a:Action>` +
		req.Header.Action + `Response</a:Action></s:Header><s:Body>` + body + `</s:Body></s:Envelope>`), nil
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestRun(t *testing.T) {
	h := &host{}
	c := &Client{URL: "https://h:5986/wsman", Post: h.post, OperationTimeout: time.Minute, MaxEnvelopeSize: 153600}
	out, errOut, exit, err := c.Run(context.Background(), `echo a&b <c>`)
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "hello" || string(errOut) != "warn" || exit != 3 {
		t.Fatalf("stdout %q, stderr %q, exit %d", out, errOut, exit)
	}
	if got := strings.Join(h.actions, " "); got != "Create Command Receive Receive Receive Signal Delete" {
		t.Fatalf("actions: %s", got)
	}
}

// A fault in a 200 answer is an error naming its code and message, and
// the shell is still deleted.
func TestFaultInAnswer(t *testing.T) {
	var actions []string
	post := func(_ context.Context, env []byte) ([]byte, error) {
		var req struct {
			Action string `xml:"Header>Action"`
		}
		xml.Unmarshal(env, &req)
		actions = append(actions, short(req.Action))
		if short(req.Action) == "Create" {
			return []byte(`<s:Envelope xmlns:s="` + nsSoap + `" xmlns:a="` + nsAddr + `"><s:Body><rsp:Shell xmlns:rsp="` + nsShell + `"><rsp:ShellId>S1</rsp:ShellId></rsp:Shell></s:Body>` +
				`<s:Header><a:Action>` + actionCreate + `Response</a:Action></s:Header></s:Envelope>`), nil
		}
		return []byte(`<s:Envelope xmlns:s="` + nsSoap + `" xmlns:a="` + nsAddr + `" xmlns:f="http://schemas.microsoft.com/wbem/wsman/1/wsmanfault"><s:Header><a:Action>` + actionFault + `</a:Action></s:Header>` +
			`<s:Body><s:Fault><s:Code><s:Value>s:Receiver</s:Value><s:Subcode><s:Value>w:InternalError</s:Value></s:Subcode></s:Code><s:Reason><s:Text xml:lang="en-US">reason</s:Text></s:Reason>` +
			`<s:Detail><f:WSManFault Code="5"><f:Message>Access is denied.</f:Message></f:WSManFault></s:Detail></s:Fault></s:Body></s:Envelope>`), nil
	}
	c := &Client{URL: "https://h:5986/wsman", Post: post, OperationTimeout: time.Minute, MaxEnvelopeSize: 153600}
	_, _, _, err := c.Run(context.Background(), "x")
	if err == nil || err.Error() != "start the command: the host answered Command with a fault: w:InternalError: Access is denied." {
		t.Fatalf("error: %v", err)
	}
	if got := strings.Join(actions, " "); got != "Create Command Delete" {
		t.Fatalf("actions: %s", got)
	}
}
