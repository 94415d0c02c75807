package emulator

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"

	"github.com/rehost/rehost/internal/lab/guestdisk"
)

// Run Command reaches an instance whose guest has the SSM agent and runs
// the commands against the guest's own files; an instance without the
// agent is not in a valid state, as SSM says.
func TestRunCommand(t *testing.T) {
	e := newEnv(t, withBootTime)
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "agent.raw")
	if _, err := guestdisk.Build(ctx, path, guestdisk.Options{Size: 32 << 20, Seed: 9,
		Files: map[string][]byte{"/usr/bin/amazon-ssm-agent": []byte("#!/bin/sh\n"), "/etc/app.conf": []byte("port=8080\nmode=prod\n")}}); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	withAgent := e.snapshotAMI("agent", raw)
	without := e.snapshotAMI("plain", guestDisk(t, guestdisk.BIOS))
	ids := map[string]string{}
	for name, ami := range map[string]string{"agent": withAgent, "plain": without} {
		in, err := e.run(&ec2.RunInstancesInput{ImageId: aws.String(ami), InstanceType: ec2types.InstanceTypeT3Micro})
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = aws.ToString(in.InstanceId)
	}
	ak, sk := e.em.Credentials()
	sc := ssm.NewFromConfig(aws.Config{Region: e.em.Region(), Credentials: credentials.NewStaticCredentialsProvider(ak, sk, ""), RetryMaxAttempts: 1},
		func(o *ssm.Options) { o.BaseEndpoint = aws.String(e.url) })
	send := func(id string, cmds ...string) (*ssm.SendCommandOutput, error) {
		return sc.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunShellScript"), InstanceIds: []string{id},
			Parameters: map[string][]string{"commands": cmds}})
	}
	_, err = send(ids["agent"], "true")
	wantCode(t, err, "InvalidInstanceId") // still booting
	time.Sleep(bootTime + 50*time.Millisecond)
	_, err = send(ids["plain"], "true")
	wantCode(t, err, "InvalidInstanceId")
	if !strings.Contains(err.Error(), "not in a valid state") {
		t.Errorf("no agent: %v", err)
	}
	for _, c := range []struct {
		cmds   []string
		code   int32
		stdout string
		stderr string
	}{
		{[]string{"grep -q 'mode=prod' /etc/app.conf && echo configured"}, 0, "configured\n", ""},
		{[]string{"test -f /etc/os-release", "test -d /etc", "grep port /etc/app.conf"}, 0, "port=8080\n", ""},
		{[]string{"test -f /etc/missing || exit 3", "echo never"}, 3, "", ""},
		{[]string{"systemctl is-active nginx"}, 127, "", "systemctl: command not found in the emulator"},
	} {
		out, err := send(ids["agent"], c.cmds...)
		if err != nil {
			t.Fatal(err)
		}
		id := aws.ToString(out.Command.CommandId)
		var inv *ssm.GetCommandInvocationOutput
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			inv, err = sc.GetCommandInvocation(ctx, &ssm.GetCommandInvocationInput{CommandId: aws.String(id), InstanceId: aws.String(ids["agent"])})
			if err != nil {
				t.Fatal(err)
			}
			if s := string(inv.Status); s == "Success" || s == "Failed" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("command %v still %s", c.cmds, inv.Status)
			}
		}
		if inv.ResponseCode != c.code || aws.ToString(inv.StandardOutputContent) != c.stdout || !strings.Contains(aws.ToString(inv.StandardErrorContent), c.stderr) {
			t.Errorf("%v: exit %d, out %q, err %q", c.cmds, inv.ResponseCode, aws.ToString(inv.StandardOutputContent), aws.ToString(inv.StandardErrorContent))
		}
		if (c.code == 0) != (inv.Status == "Success") {
			t.Errorf("%v: status %s with exit %d", c.cmds, inv.Status, inv.ResponseCode)
		}
	}
}
