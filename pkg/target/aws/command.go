package aws

import (
	"context"
	"errors"
	"fmt"
)

// SSMAPI is SSM as a launch's validation command uses it: the AWS JSON
// 1.1 operations SendCommand and GetCommandInvocation.
type SSMAPI = JSONAPI

// ErrNoAgent: SSM does not manage the instance (no agent, or not
// registered yet), so a command cannot run on it.
var ErrNoAgent = errors.New("the instance is not managed by SSM (no SSM agent running, or no instance profile that lets it register)")

// RunCommand starts a shell command on an instance through SSM Run Command
// (AWS-RunPowerShellScript on Windows, else AWS-RunShellScript) and
// returns its command id. ErrNoAgent when SSM does not manage the instance.
func (t *Target) RunCommand(ctx context.Context, instanceID string, windows bool, command string) (string, error) {
	if t.ssm == nil {
		return "", errors.New("no SSM client configured")
	}
	doc := "AWS-RunShellScript"
	if windows {
		doc = "AWS-RunPowerShellScript"
	}
	var id string
	err := t.call(ctx, "SendCommand", func(ctx context.Context) error {
		var out struct{ Command struct{ CommandId string } }
		err := t.ssm.Call(ctx, "SendCommand", map[string]any{"DocumentName": doc, "InstanceIds": []string{instanceID},
			"Parameters": map[string][]string{"commands": {command}}, "Comment": "rehost: validation of a launched server"}, &out)
		id = out.Command.CommandId
		return err
	})
	if apiCode(err) == "InvalidInstanceId" {
		return "", ErrNoAgent
	}
	if err != nil {
		return "", fmt.Errorf("run a command on %s: %w", instanceID, err)
	}
	return id, nil
}

// CommandResult is where a command is: Done once it ended, with its exit
// code and output.
type CommandResult struct {
	Status         string // SSM's: Pending, InProgress, Success, Failed, TimedOut, …
	Done           bool
	ExitCode       int
	Stdout, Stderr string
}

// CommandResult reads a command's invocation on an instance.
func (t *Target) CommandResult(ctx context.Context, commandID, instanceID string) (CommandResult, error) {
	if t.ssm == nil {
		return CommandResult{}, errors.New("no SSM client configured")
	}
	var out struct {
		Status                                      string
		ResponseCode                                int
		StandardOutputContent, StandardErrorContent string
	}
	err := t.call(ctx, "GetCommandInvocation", func(ctx context.Context) error {
		return t.ssm.Call(ctx, "GetCommandInvocation", map[string]string{"CommandId": commandID, "InstanceId": instanceID}, &out)
	})
	if err != nil {
		return CommandResult{}, fmt.Errorf("command %s on %s: %w", commandID, instanceID, err)
	}
	r := CommandResult{Status: out.Status, ExitCode: out.ResponseCode, Stdout: out.StandardOutputContent, Stderr: out.StandardErrorContent}
	switch r.Status {
	case "Pending", "InProgress", "Delayed":
	default:
		r.Done = true
	}
	return r, nil
}
