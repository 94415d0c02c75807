// Package emulator is a working model of the AWS services rehost drives — EC2 VM
// Import, AMIs and snapshots, EBS direct, IAM roles and STS — served over their
// real wire protocols (EC2 Query, AWS Query, REST-JSON, SigV4) on one loopback
// listener, so the unmodified aws-sdk-go-v2 clients reach it through
// BaseEndpoint.
//
// It is a test double and demo peer, not a mock, and it is as strict as AWS
// where a lenient peer would let a client bug through:
//
//   - Every request is verified with pkg/sigv4 as AWS verifies it: the
//     signature, the payload hash against the body, X-Amz-Date within 15
//     minutes of the emulator's clock, the scope's date, region and service.
//   - IAM documents are parsed and evaluated with internal/lab/iampolicy, failing
//     closed: an element or condition operator it does not know is refused at
//     CreateRole/PutRolePolicy (MalformedPolicyDocument), an explicit Deny
//     wins, ARNs are in the region's partition.
//   - An import task acts as the VM Import service role: its trust policy is
//     evaluated for vmie.amazonaws.com, and every call the task makes — the
//     S3 reads, kms:Decrypt of an SSE-KMS object, the KMS use of an encrypted
//     import, the EC2 calls that make snapshots and register the AMI — is
//     authorised by the role's policies first.
//   - VM Import's acceptance rules: the formats AWS lists (stream-optimized
//     VMDK only, fixed or dynamic VHD, VHDX, raw, OVA with its descriptor);
//     the boot disk of an ImportImage must carry a partition table that suits
//     the boot mode (MBR for legacy-bios, GPT with an EFI system partition for
//     uefi) and a file system and OS the importer recognises. The platform is
//     detected from the disk (NTFS: Windows; ext2/3/4 with /etc/os-release,
//     xfs, btrfs: Linux) and the distribution read from os-release.
//
// An import task reads the staged object back from a real S3 server, parses
// the disk image with pkg/disk, and stores each virtual disk as the content of
// an EBS snapshot (a sparse file in the data directory) that tests compare
// byte for byte with the source. Its phases advance on that work; only
// Config.SimulatedImportWait stands for work it does not do (booting the
// converted guest). Failures are reported the way AWS reports them: the task
// goes to "deleted" with the StatusMessage AWS shows.
//
// Operations:
//
//	EC2 (Query, 2016-11-15): ImportImage, ImportSnapshot, DescribeImportImageTasks,
//	  DescribeImportSnapshotTasks, CancelImportTask, RegisterImage, DescribeImages,
//	  DeregisterImage, CopyImage, DescribeSnapshots, DeleteSnapshot, CreateTags, DeleteTags,
//	  RunInstances, DescribeInstances, DescribeInstanceStatus, GetConsoleOutput,
//	  TerminateInstances, CreateVpc, DescribeVpcs, DeleteVpc, CreateSubnet,
//	  DescribeSubnets, DeleteSubnet, CreateSecurityGroup, DescribeSecurityGroups,
//	  DeleteSecurityGroup, DescribeInstanceTypes
//	CloudFormation (Query, 2010-05-15): CreateStack, UpdateStack, DeleteStack,
//	  DescribeStacks, DescribeStackEvents, DescribeStackResources, CreateChangeSet,
//	  DescribeChangeSet, ExecuteChangeSet, ValidateTemplate; PUT /cfn-signal/<token>
//	  signals a wait condition handle
//	SSM (JSON 1.1): SendCommand, GetCommandInvocation (AWS-RunShellScript, run
//	  against the guest's files on instances whose guest has the SSM agent)
//	STS (Query): GetCallerIdentity, AssumeRole (temporary credentials, trust policy and sts:ExternalId checked)
//	IAM (Query): CreateRole, GetRole, DeleteRole, PutRolePolicy, GetRolePolicy,
//	  DeleteRolePolicy, ListRolePolicies, UpdateAssumeRolePolicy, SimulatePrincipalPolicy
//	EBS direct (REST-JSON): StartSnapshot, PutSnapshotBlock, CompleteSnapshot,
//	  ListSnapshotBlocks, ListChangedBlocks, GetSnapshotBlock
//	KMS (JSON 1.1): CreateKey, DescribeKey, GetKeyPolicy, PutKeyPolicy, CreateGrant,
//	  ListGrants, RevokeGrant, EnableKey, DisableKey
//	Service Quotas (JSON 1.1): ListServiceQuotas, GetServiceQuota
//
// Any of them can be slowed down by name (Config.Delays), so a crash test can
// land a kill while a client waits for one.
//
// The /_emulator/ paths on the listener are a read-only, unauthenticated,
// test-only view of the state (for leak checks and the demo); never expose the
// listener beyond loopback.
package emulator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"
)

// Clock is the emulator's source of time; tests may substitute one that runs
// faster than the wall clock.
type Clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Config configures an Emulator. Region, AccountID, AccessKeyID and
// SecretAccessKey get generated defaults when empty.
type Config struct {
	Region          string // default us-east-1
	AccountID       string // 12 digits; default generated
	AccessKeyID     string // the account's key; default generated
	SecretAccessKey string

	// S3Endpoint is the S3 server import tasks read staged objects from
	// (path-style), with S3AccessKey/S3SecretKey and S3HTTPClient (for TLS
	// with a private CA). Without it every import fails at validation.
	S3Endpoint   string
	S3AccessKey  string
	S3SecretKey  string
	S3HTTPClient *http.Client

	// DataDir holds snapshot contents (sparse files), downloads in flight and
	// state.json, which New loads so a standalone emulator survives restarts.
	// Default: a temporary directory removed by Close.
	DataDir string

	// SimulatedImportWait stands in for the work VM Import does and the
	// emulator does not: booting the converted image to install drivers
	// (ImportImage's "booting" phase) and writing the EBS snapshot
	// (ImportSnapshot's "converting"). Every other phase advances on the
	// emulator's real work. Tests and crash campaigns set it to hold a
	// task active; default 0.
	SimulatedImportWait time.Duration
	// ImageDelay is how long an image made by RegisterImage or CopyImage
	// stays "pending". Default 0 (available at once).
	ImageDelay time.Duration
	Clock      Clock // default wall clock

	// Delays slow API operations by name (e.g. "DeregisterImage",
	// "DeleteSnapshot", "PutSnapshotBlock"): the emulator waits this long
	// after authenticating a call and before answering it, so a crash test
	// can land a kill while a client waits for that call. See ParseDelays.
	Delays map[string]time.Duration

	// InstanceBootTime is how long a launched instance takes to boot: it
	// runs after a quarter of it, shows console output from half of it and
	// settles its status checks at the end. Default 3 s.
	InstanceBootTime time.Duration

	// DenyCreateRole makes iam:CreateRole answer AccessDenied, as for a
	// caller whose policy does not allow it.
	DenyCreateRole bool
	// DenyOperations answer AccessDenied to the named operations of the
	// JSON services and IAM (e.g. "SimulatePrincipalPolicy",
	// "ListServiceQuotas", "GetKeyPolicy"), as for a caller whose policy
	// does not allow them.
	DenyOperations []string
	// Quotas set Service Quotas values by quota name ("Concurrent import
	// image tasks", "Concurrent import snapshot tasks", "Snapshots per
	// Region"); others keep AWS's defaults.
	Quotas map[string]float64

	Logger *slog.Logger // default: discard
}

// Emulator is the model plus its HTTP front. It is an http.Handler; Start
// serves it on a listener of its own.
type Emulator struct {
	cfg    Config
	clock  Clock
	log    *slog.Logger
	s3     *s3Reader
	tmpDir string // removed by Close when DataDir was not given

	mu      sync.Mutex
	st      *state
	cancels map[string]context.CancelFunc // running import workers by task id
	// sessions are AssumeRole's temporary credentials by access key id.
	sessions map[string]*session
	fault    func(taskID string, disk int) error
	wg       sync.WaitGroup
	closed   bool
	// stop ends the stack workers; stackWorkers marks the running ones.
	stop         chan struct{}
	stackWorkers map[string]bool

	srv *http.Server
	ln  net.Listener
}

// New builds an emulator, loading DataDir/state.json when present and
// restarting the import tasks it records as active.
func New(cfg Config) (_ *Emulator, err error) {
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	e := &Emulator{cfg: cfg, clock: cfg.Clock, log: cfg.Logger, cancels: map[string]context.CancelFunc{},
		stop: make(chan struct{}), stackWorkers: map[string]bool{}}
	if e.clock == nil {
		e.clock = realClock{}
	}
	if e.log == nil {
		e.log = slog.New(slog.DiscardHandler)
	}
	if cfg.DataDir == "" {
		d, err := os.MkdirTemp("", "rehost-emulator-")
		if err != nil {
			return nil, fmt.Errorf("emulator: create data dir: %w", err)
		}
		e.cfg.DataDir, e.tmpDir = d, d
		defer func() {
			if err != nil {
				os.RemoveAll(d)
			}
		}()
	}
	for _, d := range []string{e.snapDir(), e.downloadDir()} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("emulator: create %s: %w", d, err)
		}
	}
	if cfg.S3Endpoint != "" {
		r, err := newS3Reader(cfg)
		if err != nil {
			return nil, err
		}
		e.s3 = r
	}
	st, err := loadState(e.statePath())
	if err != nil {
		return nil, err
	}
	e.st = st
	// Configured values win; otherwise the persisted account survives a
	// restart so ARNs and printed keys stay valid.
	pick := func(cfgVal *string, stVal *string, gen func() string) {
		switch {
		case *cfgVal != "":
		case *stVal != "":
			*cfgVal = *stVal
		default:
			*cfgVal = gen()
		}
		*stVal = *cfgVal
	}
	pick(&e.cfg.AccountID, &st.AccountID, func() string { return randomDigits(12) })
	pick(&e.cfg.AccessKeyID, &st.AccessKeyID, func() string { return "AKIA" + randomUpper(16) })
	pick(&e.cfg.SecretAccessKey, &st.SecretAccessKey, func() string { return randomHex(20) })
	if !accountIDRE.MatchString(e.cfg.AccountID) {
		return nil, fmt.Errorf("emulator: account id %q is not 12 digits", e.cfg.AccountID)
	}
	// Downloads in flight when the process died are useless now.
	if ents, err := os.ReadDir(e.downloadDir()); err == nil {
		for _, ent := range ents {
			os.Remove(filepath.Join(e.downloadDir(), ent.Name()))
		}
	}
	// A snapshot file the state does not know was being written when the
	// process died.
	if ents, err := os.ReadDir(e.snapDir()); err == nil {
		for _, ent := range ents {
			id := strings.TrimSuffix(ent.Name(), ".img")
			if _, kept := st.Retained[id]; st.Snapshots[id] == nil && !kept {
				os.Remove(filepath.Join(e.snapDir(), ent.Name()))
			}
		}
	}
	e.mu.Lock()
	for _, t := range st.Tasks {
		if t.Status == "active" {
			// The task restarts from the beginning; what a killed attempt
			// made must not outlive it.
			e.removeTaskSnapshotsLocked(t.ID)
			e.startWorkerLocked(t)
		} else if t.Status == "deleting" {
			e.finishCancelLocked(t, t.StatusMessage)
		}
	}
	e.ensureDefaultVPCLocked()
	e.saveLocked()
	e.mu.Unlock()
	return e, nil
}

// Region, AccountID and Credentials describe the emulated account.
func (e *Emulator) Region() string    { return e.cfg.Region }
func (e *Emulator) AccountID() string { return e.cfg.AccountID }
func (e *Emulator) Credentials() (accessKeyID, secretAccessKey string) {
	return e.cfg.AccessKeyID, e.cfg.SecretAccessKey
}

// DataDir is where snapshot contents and state.json live.
func (e *Emulator) DataDir() string { return e.cfg.DataDir }

// InjectImportFault installs f, called before each disk of every import task
// is converted (disk counts from 0); a non-nil error fails the task with
// err.Error() as its StatusMessage. nil removes the hook.
func (e *Emulator) InjectImportFault(f func(taskID string, disk int) error) {
	e.mu.Lock()
	e.fault = f
	e.mu.Unlock()
}

// Start serves the emulator on listen (e.g. "127.0.0.1:0") and returns its
// base URL, the value for the SDK clients' BaseEndpoint.
func (e *Emulator) Start(listen string) (string, error) {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return "", fmt.Errorf("emulator: listen on %s: %w", listen, err)
	}
	e.mu.Lock()
	e.ln = ln
	// Stack operations a previous process left in progress resume once
	// wait condition handles have a URL to be signalled at.
	for _, st := range e.st.Stacks {
		if !stackSettled(st.Status) {
			e.startStackWorkerLocked(st)
		}
	}
	e.mu.Unlock()
	e.srv = &http.Server{Handler: e, ReadHeaderTimeout: 30 * time.Second}
	go e.srv.Serve(ln)
	return "http://" + ln.Addr().String(), nil
}

// Close stops the listener and the import workers (their tasks stay active in
// state.json and resume on the next New), and removes a temporary data dir.
func (e *Emulator) Close() error {
	var err error
	if e.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = e.srv.Shutdown(ctx)
		cancel()
	}
	e.mu.Lock()
	if !e.closed {
		close(e.stop)
	}
	e.closed = true
	for _, c := range e.cancels {
		c()
	}
	e.mu.Unlock()
	e.wg.Wait()
	e.mu.Lock()
	e.saveLocked()
	e.mu.Unlock()
	if e.tmpDir != "" {
		os.RemoveAll(e.tmpDir)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (e *Emulator) snapDir() string     { return filepath.Join(e.cfg.DataDir, "snapshots") }
func (e *Emulator) downloadDir() string { return filepath.Join(e.cfg.DataDir, "downloads") }
func (e *Emulator) statePath() string   { return filepath.Join(e.cfg.DataDir, "state.json") }

var accountIDRE = regexp.MustCompile(`^[0-9]{12}$`)

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randomDigits(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = '0' + b[i]%10
	}
	if b[0] == '0' {
		b[0] = '1'
	}
	return string(b)
}

func randomUpper(n int) string {
	const alpha = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alpha[int(b[i])%len(alpha)]
	}
	return string(b)
}

// newID returns prefix-<17 hex digits>, the shape of current EC2 ids.
func newID(prefix string) string { return prefix + "-" + randomHex(9)[:17] }

func requestID() string {
	h := randomHex(16)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}
