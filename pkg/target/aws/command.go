package aws

import (
	"context"
	"errors"
	"fmt"

	sdk "github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
)

// SSMAPI is the part of the SSM client a launch's validation command uses.
type SSMAPI interface {
	SendCommand(context.Context, *ssm.SendCommandInput, ...func(*ssm.Options)) (*ssm.SendCommandOutput, error)
	GetCommandInvocation(context.Context, *ssm.GetCommandInvocationInput, ...func(*ssm.Options)) (*ssm.GetCommandInvocationOutput, error)
}

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
		out, err := t.ssm.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: sdk.String(doc), InstanceIds: []string{instanceID},
			Parameters: map[string][]string{"commands": {command}}, Comment: sdk.String("rehost: validation of a launched server")})
		if err == nil {
			id = sdk.ToString(out.Command.CommandId)
		}
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
	var out *ssm.GetCommandInvocationOutput
	err := t.call(ctx, "GetCommandInvocation", func(ctx context.Context) (err error) {
		out, err = t.ssm.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: sdk.String(commandID), InstanceId: sdk.String(instanceID)})
		return err
	})
	if err != nil {
		return CommandResult{}, fmt.Errorf("command %s on %s: %w", commandID, instanceID, err)
	}
	r := CommandResult{Status: string(out.Status), ExitCode: int(out.ResponseCode), Stdout: sdk.ToString(out.StandardOutputContent),
		Stderr: sdk.ToString(out.StandardErrorContent)}
	switch r.Status {
	case "Pending", "InProgress", "Delayed":
	default:
		r.Done = true
	}
	return r, nil
}
