package emulator

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/rehost/rehost/pkg/disk"
)

// SSM Run Command (AWS JSON 1.1): SendCommand and GetCommandInvocation, for
// the instances whose root file system holds the SSM agent (others are
// "not in a valid state", as SSM answers for an instance it does not
// manage). The emulator cannot run a program inside a guest it never
// booted, so a command runs in a small interpreter against the guest's own
// files, read from the root volume as the boot check reads them: test and
// [ (-e, -f, -d, -s), cat, grep (-q, -v, regular expressions), echo,
// hostname, true, false and exit, one per line or joined with && and ||.
// Anything else fails with exit code 127, saying so.

// Command is one Run Command invocation on one instance.
type Command struct {
	ID         string    `json:"id"`
	InstanceID string    `json:"instanceId"`
	Document   string    `json:"document"`
	Commands   []string  `json:"commands"`
	Requested  time.Time `json:"requested"`
	ExitCode   int       `json:"exitCode"`
	Stdout     string    `json:"stdout,omitempty"`
	Stderr     string    `json:"stderr,omitempty"`
}

var commandRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

func (e *Emulator) serveSSM(w http.ResponseWriter, r *http.Request, body []byte) {
	op := strings.TrimPrefix(r.Header.Get("X-Amz-Target"), "AmazonSSM.")
	if err := e.delay(r.Context(), op); err != nil {
		return
	}
	var out any
	var err *apiError
	switch op {
	case "SendCommand":
		out, err = e.sendCommand(body)
	case "GetCommandInvocation":
		out, err = e.getCommandInvocation(body)
	default:
		err = &apiError{Status: http.StatusBadRequest, Code: "UnknownOperationException", Message: "the emulator's SSM serves SendCommand and GetCommandInvocation, not " + op}
	}
	if err != nil {
		writeJSONError(w, err.Status, err.Code, err.Message, "")
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

func (e *Emulator) sendCommand(body []byte) (any, *apiError) {
	var in struct {
		DocumentName   string
		InstanceIds    []string
		Parameters     map[string][]string
		TimeoutSeconds int
		Comment        string
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("SerializationException", "%v", err)
	}
	if in.DocumentName != "AWS-RunShellScript" && in.DocumentName != "AWS-RunPowerShellScript" {
		return nil, badRequest("InvalidDocument", "Document %s does not exist in your account", in.DocumentName)
	}
	if len(in.InstanceIds) != 1 {
		return nil, badRequest("InvalidParameters", "the emulator runs a command on one instance at a time")
	}
	cmds := in.Parameters["commands"]
	if len(cmds) == 0 {
		return nil, badRequest("InvalidParameters", "Parameter \"commands\" is required")
	}
	e.mu.Lock()
	in0 := e.st.Instances[in.InstanceIds[0]]
	var boot GuestBoot
	var snap string
	ok := in0 != nil && e.instanceStateLocked(in0) == "running" && in0.Boot.SSMAgent && e.elapsed(in0) >= e.bootTime()
	if ok {
		boot, snap = in0.Boot, in0.Volumes[0].SnapshotID
	}
	e.mu.Unlock()
	if !ok {
		return nil, badRequest("InvalidInstanceId", "Instances [[%s]] not in a valid state for account %s", in.InstanceIds[0], e.cfg.AccountID)
	}
	if in.DocumentName != "AWS-RunShellScript" {
		// Only Linux guests (whose files it reads) have the agent here.
		return nil, badRequest("UnsupportedPlatformType", "The document %s is not supported on the platform of instance %s", in.DocumentName, in.InstanceIds[0])
	}
	c := &Command{ID: uuid(), InstanceID: in.InstanceIds[0], Document: in.DocumentName, Commands: cmds, Requested: e.clock.Now().UTC()}
	root, closeRoot, err := e.guestRoot(snap, boot)
	if err != nil {
		c.ExitCode, c.Stderr = 1, err.Error()
	} else {
		c.ExitCode, c.Stdout, c.Stderr = runScript(root, hostName(in0.PrivateIP), cmds)
		closeRoot()
	}
	e.mu.Lock()
	e.st.Commands[c.ID] = c
	e.saveLocked()
	e.mu.Unlock()
	return map[string]any{"Command": map[string]any{"CommandId": c.ID, "DocumentName": c.Document, "InstanceIds": []string{c.InstanceID},
		"Status": "Pending", "RequestedDateTime": epoch(c.Requested), "Comment": in.Comment}}, nil
}

// guestRoot opens the root file system of an instance's guest.
func (e *Emulator) guestRoot(snapshotID string, b GuestBoot) (io.ReaderAt, func(), error) {
	r, _, err := e.SnapshotContent(snapshotID)
	if err != nil {
		return nil, nil, err
	}
	return io.NewSectionReader(r, b.RootOffset, b.RootSize), func() { r.Close() }, nil
}

// commandStatus is where an invocation is on the clock: Pending, then
// InProgress, then Success or Failed, each for an eighth of the boot time.
func (e *Emulator) commandStatus(c *Command) string {
	up := e.clock.Now().Sub(c.Requested)
	switch {
	case up < e.bootTime()/8:
		return "Pending"
	case up < e.bootTime()/4:
		return "InProgress"
	case c.ExitCode == 0:
		return "Success"
	}
	return "Failed"
}

func (e *Emulator) getCommandInvocation(body []byte) (any, *apiError) {
	var in struct{ CommandId, InstanceId string }
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("SerializationException", "%v", err)
	}
	if !commandRE.MatchString(in.CommandId) {
		return nil, badRequest("InvalidCommandId", "%s is not a command id", in.CommandId)
	}
	e.mu.Lock()
	c := e.st.Commands[in.CommandId]
	e.mu.Unlock()
	if c == nil || c.InstanceID != in.InstanceId {
		return nil, badRequest("InvocationDoesNotExist", "Command %s on instance %s does not exist", in.CommandId, in.InstanceId)
	}
	status := e.commandStatus(c)
	out := map[string]any{"CommandId": c.ID, "InstanceId": c.InstanceID, "DocumentName": c.Document, "Status": status,
		"StatusDetails": status, "ResponseCode": -1}
	if status == "Success" || status == "Failed" {
		out["ResponseCode"], out["StandardOutputContent"], out["StandardErrorContent"] = c.ExitCode, c.Stdout, c.Stderr
	}
	return out, nil
}

// runScript runs the commands against the guest's root file system and
// returns the exit code, standard output and error.
func runScript(root io.ReaderAt, host string, lines []string) (int, string, string) {
	var stdout, stderr strings.Builder
	code := 0
	for _, l := range lines {
		for _, line := range strings.Split(l, "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			var exit bool
			code, exit = runLine(root, host, line, &stdout, &stderr)
			if exit {
				return code, stdout.String(), stderr.String()
			}
		}
	}
	return code, stdout.String(), stderr.String()
}

// runLine runs one line of commands joined by && and ||; exit says the
// line ran exit.
func runLine(root io.ReaderAt, host, line string, stdout, stderr *strings.Builder) (code int, exit bool) {
	op := ""
	for line != "" {
		next, rest, sep := cutOperator(line)
		if op == "" || op == "&&" && code == 0 || op == "||" && code != 0 {
			code, exit = runCommand(root, host, fields(next), stdout, stderr)
			if exit {
				return code, true
			}
		}
		op, line = sep, rest
	}
	return code, false
}

func cutOperator(s string) (cmd, rest, op string) {
	i, j := strings.Index(s, "&&"), strings.Index(s, "||")
	switch {
	case i < 0 && j < 0:
		return s, "", ""
	case j < 0 || i >= 0 && i < j:
		return s[:i], strings.TrimSpace(s[i+2:]), "&&"
	}
	return s[:j], strings.TrimSpace(s[j+2:]), "||"
}

// fields splits a command into words, honouring single and double quotes.
func fields(s string) []string {
	var out []string
	var cur strings.Builder
	quote, in := rune(0), false
	for _, r := range s {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote == 0 && (r == '\'' || r == '"'):
			quote, in = r, true
		case quote == 0 && (r == ' ' || r == '\t'):
			if in {
				out, in = append(out, cur.String()), false
				cur.Reset()
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

// pathKind is "file", "dir" or "" (missing).
func pathKind(root io.ReaderAt, p string) (string, []byte) {
	b, err := disk.ReadExtFile(root, p)
	switch {
	case err == nil:
		return "file", b
	case strings.Contains(err.Error(), "not a regular file"):
		return "dir", nil
	}
	return "", nil
}

func runCommand(root io.ReaderAt, host string, args []string, stdout, stderr *strings.Builder) (int, bool) {
	if len(args) == 0 {
		return 0, false
	}
	switch args[0] {
	case "true":
		return 0, false
	case "false":
		return 1, false
	case "exit":
		n := 0
		if len(args) > 1 {
			n, _ = strconv.Atoi(args[1])
		}
		return n, true
	case "echo":
		fmt.Fprintln(stdout, strings.Join(args[1:], " "))
		return 0, false
	case "hostname":
		fmt.Fprintln(stdout, host)
		return 0, false
	case "test", "[":
		if args[0] == "[" {
			if args[len(args)-1] != "]" {
				fmt.Fprintln(stderr, "[: missing ]")
				return 2, false
			}
			args = args[:len(args)-1]
		}
		if len(args) != 3 {
			fmt.Fprintf(stderr, "%s: the emulator takes -e, -f, -d or -s and one path\n", args[0])
			return 2, false
		}
		kind, b := pathKind(root, args[2])
		ok := false
		switch args[1] {
		case "-e":
			ok = kind != ""
		case "-f":
			ok = kind == "file"
		case "-d":
			ok = kind == "dir"
		case "-s":
			ok = kind == "file" && len(b) > 0
		default:
			fmt.Fprintf(stderr, "%s: %s: the emulator takes -e, -f, -d or -s\n", args[0], args[1])
			return 2, false
		}
		if ok {
			return 0, false
		}
		return 1, false
	case "cat":
		code := 0
		for _, p := range args[1:] {
			kind, b := pathKind(root, p)
			if kind != "file" {
				fmt.Fprintf(stderr, "cat: %s: No such file or directory\n", p)
				code = 1
				continue
			}
			stdout.Write(b)
		}
		return code, false
	case "grep":
		quiet, invert := false, false
		rest := args[1:]
		for len(rest) > 0 && strings.HasPrefix(rest[0], "-") {
			quiet = quiet || strings.Contains(rest[0], "q")
			invert = invert || strings.Contains(rest[0], "v")
			rest = rest[1:]
		}
		if len(rest) != 2 {
			fmt.Fprintln(stderr, "grep: the emulator takes a pattern and one file")
			return 2, false
		}
		re, err := regexp.Compile(rest[0])
		if err != nil {
			fmt.Fprintf(stderr, "grep: %v\n", err)
			return 2, false
		}
		kind, b := pathKind(root, rest[1])
		if kind != "file" {
			fmt.Fprintf(stderr, "grep: %s: No such file or directory\n", rest[1])
			return 2, false
		}
		found := false
		for _, l := range strings.Split(string(b), "\n") {
			if re.MatchString(l) != invert {
				found = true
				if !quiet {
					fmt.Fprintln(stdout, l)
				}
			}
		}
		if found {
			return 0, false
		}
		return 1, false
	}
	fmt.Fprintf(stderr, "%s: command not found in the emulator (it runs test, [, cat, grep, echo, hostname, true, false and exit against the guest's files)\n", args[0])
	return 127, false
}
