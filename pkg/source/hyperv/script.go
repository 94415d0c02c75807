package hyperv

import (
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"unicode/utf16"

	"github.com/rehost/rehost/pkg/source"
)

// The scripts rehost runs on a Hyper-V host or SCVMM server are a fixed set
// of files, reviewed as they are: scripts/prelude.ps1 (error handling and
// the JSON answer), scripts/vmm-prelude.ps1 (the VMM connection),
// scripts/cim-prelude.ps1 (Hyper-V's WMI provider), and one body per
// operation. Nothing of a script is built from user input: an
// operation's arguments travel as JSON, base64-encoded into a literal the
// prelude decodes into $In, where they are data.
//
//go:embed scripts/*.ps1
var scriptFiles embed.FS

// Script names.
const (
	scriptHVInventory     = "hv-inventory"
	scriptHVDigest        = "hv-digest"
	scriptHVCheckpoint    = "hv-checkpoint"
	scriptHVCheckpoints   = "hv-checkpoints"
	scriptHVRemove        = "hv-remove"
	scriptHVExport        = "hv-export"
	scriptHVRCTCheckpoint = "hv-rct-checkpoint"
	scriptHVChanges       = "hv-changes"
	scriptHVKeep          = "hv-keep"
	scriptHVForget        = "hv-forget"
	scriptVMMInventory    = "vmm-inventory"
	scriptVMMCheckpoint   = "vmm-checkpoint"
	scriptVMMCheckpoints  = "vmm-checkpoints"
	scriptVMMRemove       = "vmm-remove"
	scriptVMMExport       = "vmm-export"
)

// ScriptNames lists every operation script.
var ScriptNames = []string{
	scriptHVInventory, scriptHVDigest, scriptHVCheckpoint, scriptHVCheckpoints, scriptHVRemove, scriptHVExport,
	scriptHVRCTCheckpoint, scriptHVChanges, scriptHVKeep, scriptHVForget,
	scriptVMMInventory, scriptVMMCheckpoint, scriptVMMCheckpoints, scriptVMMRemove, scriptVMMExport,
}

// cimScripts reach Hyper-V's WMI provider for what the cmdlets lack
// (recovery checkpoints, resilient change tracking, reference points).
var cimScripts = map[string]bool{scriptHVRCTCheckpoint: true, scriptHVCheckpoints: true, scriptHVChanges: true, scriptHVKeep: true, scriptHVForget: true}

// ScriptBody is the text of operation name as sent: its file without
// comment lines and indentation, preceded by the VMM prelude for the SCVMM
// operations and the CIM prelude for those reaching WMI. It panics on an
// unknown name (a programming error).
func ScriptBody(name string) string {
	body := strip(mustScript(name))
	if strings.HasPrefix(name, "vmm-") {
		body = strip(mustScript("vmm-prelude")) + "\n" + body
	}
	if cimScripts[name] {
		body = strip(mustScript("cim-prelude")) + "\n" + body
	}
	return body
}

func mustScript(name string) string {
	b, err := scriptFiles.ReadFile("scripts/" + name + ".ps1")
	if err != nil {
		panic("hyperv: no script " + name)
	}
	return string(b)
}

// strip drops comment lines, blank lines and indentation. The scripts hold
// no here-strings or block comments, so no line is inside one.
func strip(s string) string {
	var out []string
	for _, l := range strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// Invocation wraps a body: decode the argument, run the body in a script
// block, answer its output (always an array) or the error that stopped it.
const (
	invokeHead = "try {\n$In = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String('"
	invokeMid  = "')) | ConvertFrom-Json\n$r = @(& {\n"
	invokeTail = "\n})\nWrite-RehostResult $true $r\n} catch {\nWrite-RehostResult $false $_\nexit 1\n}"
)

var base64Text = regexp.MustCompile(`^[A-Za-z0-9+/]*={0,2}$`)

// Script is the full text of operation name with arguments args: the
// prelude, the invocation with the arguments as a base64 literal, the body.
func Script(name string, args any) (string, error) {
	js, err := json.Marshal(args)
	if err != nil {
		return "", fmt.Errorf("encode the arguments of %s: %w", name, err)
	}
	arg := base64.StdEncoding.EncodeToString(js)
	if !base64Text.MatchString(arg) { // by construction; checked because it is spliced into code
		return "", fmt.Errorf("encode the arguments of %s: not base64", name)
	}
	return strip(mustScript("prelude")) + "\n" + invokeHead + arg + invokeMid + ScriptBody(name) + invokeTail, nil
}

// ParseScript splits a full script text into its operation name and
// decoded arguments; it fails unless the text is exactly the prelude, the
// invocation and one known body — what a host should expect from rehost.
// The WS-Management test server uses it.
func ParseScript(text string) (name string, args json.RawMessage, err error) {
	prefix := strip(mustScript("prelude")) + "\n" + invokeHead
	rest, ok := strings.CutPrefix(text, prefix)
	if !ok {
		return "", nil, errors.New("the script does not start with the rehost prelude")
	}
	arg, rest, ok := strings.Cut(rest, invokeMid)
	if !ok || !base64Text.MatchString(arg) {
		return "", nil, errors.New("the script's argument is not a base64 literal")
	}
	js, err := base64.StdEncoding.DecodeString(arg)
	if err != nil || !json.Valid(js) {
		return "", nil, fmt.Errorf("the script's argument is not base64 JSON: %v", err)
	}
	body, ok := strings.CutSuffix(rest, invokeTail)
	if !ok {
		return "", nil, errors.New("the script does not end with the rehost invocation")
	}
	for _, n := range ScriptNames {
		if ScriptBody(n) == body {
			return n, js, nil
		}
	}
	return "", nil, errors.New("the script body is none of rehost's")
}

// The command line: cmd.exe, through which WinRS starts commands, takes at
// most 8191 characters, and -EncodedCommand of a script costs 2.7
// characters per character of script. So the command is a short loader
// that inflates the gzip-compressed script (a fraction of its size) and
// runs it; the loader holds only the compressed script's base64.
const (
	loaderHead = "$g = New-Object IO.Compression.GZipStream((New-Object IO.MemoryStream(,[Convert]::FromBase64String('"
	loaderTail = "'))), [IO.Compression.CompressionMode]::Decompress)\n" +
		"& ([scriptblock]::Create((New-Object IO.StreamReader($g, [Text.Encoding]::UTF8)).ReadToEnd()))"
	commandPrefix = "powershell.exe -NoLogo -NoProfile -NonInteractive -EncodedCommand "
	// MaxCommandLine is cmd.exe's limit.
	MaxCommandLine = 8191
)

// Command is the command line that runs script text on a Windows host.
func Command(text string) (string, error) {
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	zw.Write([]byte(text))
	zw.Close()
	loader := loaderHead + base64.StdEncoding.EncodeToString(gz.Bytes()) + loaderTail
	var u16 []byte
	for _, c := range utf16.Encode([]rune(loader)) {
		u16 = append(u16, byte(c), byte(c>>8))
	}
	cmd := commandPrefix + base64.StdEncoding.EncodeToString(u16)
	if len(cmd) > MaxCommandLine {
		return "", fmt.Errorf("the command line of %d characters exceeds cmd.exe's %d", len(cmd), MaxCommandLine)
	}
	return cmd, nil
}

// DecodeCommand reverses Command: the script text a command line runs.
func DecodeCommand(cmd string) (string, error) {
	enc, ok := strings.CutPrefix(strings.TrimSpace(cmd), commandPrefix)
	if !ok {
		return "", errors.New("not a powershell -EncodedCommand line of rehost's")
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(raw)%2 != 0 {
		return "", fmt.Errorf("-EncodedCommand is not base64 UTF-16: %v", err)
	}
	u := make([]uint16, len(raw)/2)
	for i := range u {
		u[i] = uint16(raw[2*i]) | uint16(raw[2*i+1])<<8
	}
	loader := string(utf16.Decode(u))
	inner, ok := strings.CutPrefix(loader, loaderHead)
	if !ok {
		return "", errors.New("the encoded command is not rehost's loader")
	}
	inner, ok = strings.CutSuffix(inner, loaderTail)
	if !ok {
		return "", errors.New("the encoded command is not rehost's loader")
	}
	gzBytes, err := base64.StdEncoding.DecodeString(inner)
	if err != nil {
		return "", fmt.Errorf("the loader's script is not base64: %w", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gzBytes))
	if err != nil {
		return "", fmt.Errorf("the loader's script is not gzip: %w", err)
	}
	var text bytes.Buffer
	if _, err := text.ReadFrom(zr); err != nil {
		return "", fmt.Errorf("inflate the loader's script: %w", err)
	}
	return text.String(), nil
}

// Answer is the JSON a script writes on stdout.
type Answer struct {
	OK     bool            `json:"ok"`
	Result json.RawMessage `json:"result,omitempty"`
	Error  *ScriptError    `json:"error,omitempty"`
}

// ScriptError is the PowerShell error that stopped a script: its
// ErrorCategory, FullyQualifiedErrorId and exception message.
type ScriptError struct {
	Category string `json:"category"`
	ID       string `json:"id"`
	Message  string `json:"message"`
}

func (e *ScriptError) Error() string { return e.Message }

// Unwrap classifies the error for callers.
func (e *ScriptError) Unwrap() error {
	switch e.Category {
	case "ObjectNotFound":
		return source.ErrNotFound
	case "PermissionDenied", "SecurityError", "AuthenticationError":
		return source.ErrAuth
	}
	return nil
}

// refusal is the id of rehost's own refusals ("RehostSharedDisk"), or "".
func (e *ScriptError) refusal() string {
	id, _, _ := strings.Cut(e.ID, ",")
	if strings.HasPrefix(id, "Rehost") {
		return id
	}
	return ""
}

// decodeAnswer reads a script's stdout into out (a pointer to a slice).
func decodeAnswer(name string, stdout, stderr string, out any) error {
	var a Answer
	if err := json.Unmarshal([]byte(strings.TrimSpace(stdout)), &a); err != nil {
		msg := strings.TrimSpace(stderr)
		if msg == "" {
			msg = strings.TrimSpace(stdout)
		}
		return fmt.Errorf("script %s answered no rehost JSON (%v): %s", name, err, clip(cleanCLIXML(msg), 600))
	}
	if !a.OK {
		if a.Error == nil {
			return fmt.Errorf("script %s failed without saying why", name)
		}
		return a.Error
	}
	if out == nil {
		return nil
	}
	if len(a.Result) == 0 || string(a.Result) == "null" {
		a.Result = json.RawMessage("[]")
	}
	if err := json.Unmarshal(a.Result, out); err != nil {
		return fmt.Errorf("script %s: read its answer: %w", name, err)
	}
	return nil
}

// cleanCLIXML turns PowerShell's serialized error stream ("#< CLIXML
// <Objs …><S S="Error">…_x000D__x000A_</S>") into its text.
func cleanCLIXML(s string) string {
	if !strings.HasPrefix(s, "#< CLIXML") {
		return s
	}
	var parts []string
	for _, m := range clixmlError.FindAllStringSubmatch(s, -1) {
		parts = append(parts, m[1])
	}
	t := strings.Join(parts, "")
	t = strings.NewReplacer("_x000D_", "", "_x000A_", " ", "&lt;", "<", "&gt;", ">", "&amp;", "&", "&quot;", `"`).Replace(t)
	return strings.Join(strings.Fields(t), " ")
}

var clixmlError = regexp.MustCompile(`<S S="Error">(.*?)</S>`)

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
