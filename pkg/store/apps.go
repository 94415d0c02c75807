package store

import (
	"context"
	"fmt"
	"time"
)

// Apps is the store's role for application migration: applications (server
// groups, their launch and replication configuration) and their launches
// (the CloudFormation stacks made of them). connector/app owns what the
// configuration means; the store keeps it, and enforces what must hold even
// under concurrent writers: unique app names, a server in at most one group
// of one application, servers that exist, and one live launch per
// application and kind.
type Apps interface {
	// CreateApp stores a with a new AppID (and a new GroupID for each group
	// given without one). ErrInvalid on an empty name, a duplicate group id
	// or a server listed twice; ErrNotFound if a server does not exist;
	// ErrConflict, naming the other app, if the name is taken or a server
	// already belongs to another app.
	CreateApp(ctx context.Context, a App) (App, error)
	// GetApp returns the app; ErrNotFound if there is none.
	GetApp(ctx context.Context, id string) (App, error)
	// ListApps lists every app by name.
	ListApps(ctx context.Context) ([]App, error)
	// UpdateApp applies fn to the app and stores it, with CreateApp's rules;
	// AppID and CreatedAt cannot change, UpdatedAt is set by the store, and
	// groups given without a GroupID get one.
	UpdateApp(ctx context.Context, id string, fn func(*App) error) (App, error)
	// DeleteApp removes the app and its finished launches. ErrConflict,
	// naming the launch, while a launch of it is not TERMINATED (its stack
	// may still exist); ErrNotFound if there is no such app.
	DeleteApp(ctx context.Context, id string) error
	// AppOfServer returns the app a server belongs to; ErrNotFound if none.
	AppOfServer(ctx context.Context, serverID string) (App, error)

	// CreateLaunch records a launch about to be made (state PENDING unless
	// set) with a new LaunchID. It is the intent record: the stack may not
	// exist yet. ErrNotFound if the app is missing; ErrInvalid on an unknown
	// kind or state or an empty stack name; ErrConflict, naming it, if the
	// app already has a launch of that kind that is not TERMINATED.
	CreateLaunch(ctx context.Context, l Launch) (Launch, error)
	// GetLaunch returns the launch; ErrNotFound if there is none.
	GetLaunch(ctx context.Context, id string) (Launch, error)
	// ListLaunches lists an app's launches, newest first.
	ListLaunches(ctx context.Context, appID string) ([]Launch, error)
	// LiveLaunches lists the launches of every app that are not
	// TERMINATED, oldest first: what a restarted connector must watch.
	LiveLaunches(ctx context.Context) ([]Launch, error)
	// UpdateLaunch applies fn to the launch and stores it; LaunchID, AppID,
	// Kind and CreatedAt cannot change, UpdatedAt is set by the store.
	// ErrConflict if it would make a second live launch of the kind.
	UpdateLaunch(ctx context.Context, id string, fn func(*Launch) error) (Launch, error)
}

// App is a group of servers migrated together, as in SMS: server groups
// launched in order, each server launched from its latest AMI.
type App struct {
	AppID       string        `json:"appId"` // "app-" + 17 hex
	Name        string        `json:"name"`  // unique
	Description string        `json:"description,omitempty"`
	RoleName    string        `json:"roleName,omitempty"`
	Groups      []ServerGroup `json:"serverGroups"`
	Tags        []Tag         `json:"tags,omitempty"`
	// Launch is the launch configuration; nil until one is put.
	Launch *LaunchConfig `json:"launchConfiguration,omitempty"`
	// Replication holds each server's replication parameters; nil until
	// they are put.
	Replication *ReplicationConfig `json:"replicationConfiguration,omitempty"`
	// ReplicationStopped is set by StopAppReplication and cleared by
	// StartAppReplication.
	ReplicationStopped bool      `json:"replicationStopped,omitempty"`
	CreatedAt          time.Time `json:"createdAt"`
	UpdatedAt          time.Time `json:"updatedAt"`
}

// Servers lists the app's servers, group by group.
func (a App) Servers() []string {
	var out []string
	for _, g := range a.Groups {
		out = append(out, g.ServerIDs...)
	}
	return out
}

// ServerGroup is a set of servers launched together.
type ServerGroup struct {
	GroupID   string   `json:"serverGroupId"` // "group-" + 17 hex
	Name      string   `json:"name"`
	ServerIDs []string `json:"serverIds"`
}

// Tag is a key and value, as SMS and EC2 carry them.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// S3Location is an object in S3.
type S3Location struct {
	Bucket string `json:"bucket"`
	Key    string `json:"key"`
}

// LaunchConfig says how each server of an app is launched, and in which
// order its groups start.
type LaunchConfig struct {
	RoleName   string        `json:"roleName,omitempty"`
	AutoLaunch bool          `json:"autoLaunch,omitempty"`
	Groups     []GroupLaunch `json:"serverGroupLaunchConfigurations"`
	// Test is where test launches go; nil launches tests into the
	// cutover's networks.
	Test *TestLaunchConfig `json:"testLaunch,omitempty"`
}

// GroupLaunch is the launch configuration of one server group.
type GroupLaunch struct {
	GroupID string `json:"serverGroupId"`
	// LaunchOrder: a group starts after every group of a lower order
	// signalled readiness; groups of the same order start together.
	LaunchOrder int `json:"launchOrder"`
	// After names further groups (by id) this one waits for, whatever
	// their order (rehost's).
	After   []string       `json:"after,omitempty"`
	Servers []ServerLaunch `json:"serverLaunchConfigurations"`
}

// ServerLaunch is how one server is launched.
type ServerLaunch struct {
	ServerID          string      `json:"serverId"`
	LogicalID         string      `json:"logicalId,omitempty"`
	InstanceType      string      `json:"instanceType,omitempty"`
	VPC               string      `json:"vpc,omitempty"`
	Subnet            string      `json:"subnet,omitempty"`
	SecurityGroups    []string    `json:"securityGroups,omitempty"`
	KeyName           string      `json:"ec2KeyName,omitempty"`
	PrivateIP         string      `json:"privateIpAddress,omitempty"`
	AssociatePublicIP *bool       `json:"associatePublicIpAddress,omitempty"`
	InstanceProfile   string      `json:"iamInstanceProfileName,omitempty"`
	UserData          string      `json:"userData,omitempty"` // the script itself
	UserDataS3        *S3Location `json:"userDataS3Location,omitempty"`
	ConfigureScript   *S3Location `json:"configureScript,omitempty"`
	// ConfigureScriptType is SHELL_SCRIPT or POWERSHELL_SCRIPT.
	ConfigureScriptType string `json:"configureScriptType,omitempty"`
	VolumeType          string `json:"volumeType,omitempty"`
	Tags                []Tag  `json:"tags,omitempty"`
	// ValidationCommand, when set, is run on the launched instance through
	// SSM Run Command once it booted; its exit code decides whether the
	// server is ready.
	ValidationCommand string `json:"validationCommand,omitempty"`
}

// TestLaunchConfig is where a test launch goes: its own VPC and subnet,
// security groups, and a suffix on every name so it is told apart from the
// cutover.
type TestLaunchConfig struct {
	VPC            string   `json:"vpc,omitempty"`
	Subnet         string   `json:"subnet,omitempty"`
	SecurityGroups []string `json:"securityGroups,omitempty"`
	NameSuffix     string   `json:"nameSuffix,omitempty"`
}

// ReplicationConfig holds the replication parameters of an app's servers.
type ReplicationConfig struct {
	Servers []ServerReplication `json:"servers"`
}

// ServerReplication is the replication job StartAppReplication makes for a
// server.
type ServerReplication struct {
	ServerID                 string    `json:"serverId"`
	SeedTime                 time.Time `json:"seedTime,omitzero"`
	Frequency                int       `json:"frequency,omitempty"`
	RunOnce                  bool      `json:"runOnce,omitempty"`
	LicenseType              string    `json:"licenseType,omitempty"`
	NumberOfRecentAmisToKeep int       `json:"numberOfRecentAmisToKeep,omitempty"`
	Encrypted                bool      `json:"encrypted,omitempty"`
	KmsKeyID                 string    `json:"kmsKeyId,omitempty"`
}

// LaunchKind tells a cutover from a test launch.
type LaunchKind string

// Launch kinds.
const (
	LaunchCutover LaunchKind = "cutover"
	LaunchTest    LaunchKind = "test"
)

// LaunchState is where a launch is in its life.
type LaunchState string

// Launch states.
const (
	// LaunchPending: recorded before the stack is created; the stack may
	// or may not exist (a crash can fall between), so it is looked up by
	// name.
	LaunchPending LaunchState = "PENDING"
	// LaunchCreating: the stack is being created.
	LaunchCreating LaunchState = "CREATING"
	// LaunchUpdating: the stack of a launched app is being updated (a
	// delta launch).
	LaunchUpdating LaunchState = "UPDATING"
	// LaunchLaunched: the stack is complete (created or updated).
	LaunchLaunched LaunchState = "LAUNCHED"
	// LaunchUpdateFailed: an update rolled back; the earlier launch stands.
	LaunchUpdateFailed LaunchState = "UPDATE_FAILED"
	// LaunchFailed: the stack failed and was rolled back; it still exists
	// until terminated.
	LaunchFailed LaunchState = "FAILED"
	// LaunchTerminating: the stack is being deleted (recorded before the
	// call).
	LaunchTerminating     LaunchState = "TERMINATING"
	LaunchTerminateFailed LaunchState = "TERMINATE_FAILED"
	// LaunchTerminated: the stack is gone; nothing of the launch is left.
	LaunchTerminated LaunchState = "TERMINATED"
)

// InProgress reports whether the stack is changing: the connector polls it.
func (s LaunchState) InProgress() bool {
	return s == LaunchPending || s == LaunchCreating || s == LaunchUpdating || s == LaunchTerminating
}

// Launch is one launch of an app: a CloudFormation stack and the instances
// it made.
type Launch struct {
	LaunchID  string      `json:"launchId"` // "launch-" + 17 hex
	AppID     string      `json:"appId"`
	Kind      LaunchKind  `json:"kind"`
	State     LaunchState `json:"state"`
	StackName string      `json:"stackName"`
	StackID   string      `json:"stackId,omitempty"`
	// StackStatus is CloudFormation's own status of the stack.
	StackStatus   string `json:"stackStatus,omitempty"`
	StatusMessage string `json:"statusMessage,omitempty"`
	// Template and Parameters are what the stack is (to be) made of, kept
	// so that a launch resumed after a crash creates what was decided.
	Template   string            `json:"template,omitempty"`
	Parameters map[string]string `json:"parameters,omitempty"`
	Servers    []LaunchedServer  `json:"servers,omitempty"`
	LaunchedAt time.Time         `json:"launchedAt,omitzero"`
	CreatedAt  time.Time         `json:"createdAt"`
	UpdatedAt  time.Time         `json:"updatedAt"`
}

// LaunchedServer is one server of a launch: its instance and whether it
// booted.
type LaunchedServer struct {
	ServerID  string `json:"serverId"`
	Name      string `json:"name,omitempty"`
	LogicalID string `json:"logicalId"`
	// Group is the logical id of its server group in the template.
	Group      string `json:"group,omitempty"`
	InstanceID string `json:"instanceId,omitempty"`
	PrivateIP  string `json:"privateIp,omitempty"`
	PublicIP   string `json:"publicIp,omitempty"`
	// Boot is the boot check's verdict (connector/app's vocabulary).
	Boot       string `json:"boot,omitempty"`
	BootDetail string `json:"bootDetail,omitempty"`
	// Console holds the last lines of the console output read.
	Console   []string  `json:"console,omitempty"`
	CheckedAt time.Time `json:"checkedAt,omitzero"`
	// Signalled: the verdict stands and the server's group was told (if
	// its wait condition was waiting).
	Signalled bool `json:"signalled,omitempty"`
	// Validation is the server's validation command and its outcome.
	Validation *ServerValidation `json:"validation,omitempty"`
}

// ServerValidation is a validation command run on a launched server.
type ServerValidation struct {
	Command string `json:"command"`
	Windows bool   `json:"windows,omitempty"` // PowerShell, not a shell
	// CommandID is SSM's, once sent; Since is when it was first tried.
	CommandID string    `json:"commandId,omitempty"`
	Since     time.Time `json:"since,omitzero"`
	// Status is connector/app's vocabulary (running, passed, failed, not
	// run); ExitCode and Output (its last lines) once it ended.
	Status   string `json:"status,omitempty"`
	ExitCode int    `json:"exitCode"`
	Output   string `json:"output,omitempty"`
}

func validateLaunch(l Launch) error {
	switch l.Kind {
	case LaunchCutover, LaunchTest:
	default:
		return fmt.Errorf("%w: launch of app %s: unknown kind %q (want cutover or test)", ErrInvalid, l.AppID, l.Kind)
	}
	switch l.State {
	case LaunchPending, LaunchCreating, LaunchUpdating, LaunchLaunched, LaunchUpdateFailed, LaunchFailed,
		LaunchTerminating, LaunchTerminateFailed, LaunchTerminated:
	default:
		return fmt.Errorf("%w: launch of app %s: unknown state %q", ErrInvalid, l.AppID, l.State)
	}
	if l.StackName == "" {
		return fmt.Errorf("%w: launch of app %s: stack name is empty", ErrInvalid, l.AppID)
	}
	return nil
}

// ID prefixes of the apps role.
const (
	prefixGroup  = "group-"
	prefixLaunch = "launch-"
)
