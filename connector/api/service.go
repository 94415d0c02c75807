package api

import (
	"context"
	"io"
)

// Service is the connector's API as a Go interface: the SMS operations and
// the appliance's own. It has two implementations: Local, which runs them
// on an open state directory (the daemon serving the API, or the CLI on the
// appliance itself), and the HTTP client in connector/api/client, which
// calls a connector over HTTPS. The CLI's verbs call a Service and do not
// know which one they hold.
//
// Every method returns an *Error on a failure the caller can act on (its
// Type is SMS's exception name); other errors are transport failures.
type Service interface {
	// SMS operations.
	ImportServerCatalog(context.Context, *ImportServerCatalogInput) (*ImportServerCatalogOutput, error)
	GetServers(context.Context, *GetServersInput) (*GetServersOutput, error)
	DeleteServerCatalog(context.Context, *DeleteServerCatalogInput) (*DeleteServerCatalogOutput, error)
	GetConnectors(context.Context, *GetConnectorsInput) (*GetConnectorsOutput, error)
	DisassociateConnector(context.Context, *DisassociateConnectorInput) (*DisassociateConnectorOutput, error)
	CreateReplicationJob(context.Context, *CreateReplicationJobInput) (*CreateReplicationJobOutput, error)
	GetReplicationJobs(context.Context, *GetReplicationJobsInput) (*GetReplicationJobsOutput, error)
	UpdateReplicationJob(context.Context, *UpdateReplicationJobInput) (*UpdateReplicationJobOutput, error)
	DeleteReplicationJob(context.Context, *DeleteReplicationJobInput) (*DeleteReplicationJobOutput, error)
	StartOnDemandReplicationRun(context.Context, *StartOnDemandReplicationRunInput) (*StartOnDemandReplicationRunOutput, error)
	GetReplicationRuns(context.Context, *GetReplicationRunsInput) (*GetReplicationRunsOutput, error)

	// SMS's application operations (local_apps.go).
	CreateApp(context.Context, *CreateAppInput) (*AppOutput, error)
	GetApp(context.Context, *GetAppInput) (*AppOutput, error)
	UpdateApp(context.Context, *UpdateAppInput) (*AppOutput, error)
	DeleteApp(context.Context, *DeleteAppInput) (*DeleteAppOutput, error)
	ListApps(context.Context, *ListAppsInput) (*ListAppsOutput, error)
	PutAppLaunchConfiguration(context.Context, *PutAppLaunchConfigurationInput) (*PutAppLaunchConfigurationOutput, error)
	GetAppLaunchConfiguration(context.Context, *GetAppLaunchConfigurationInput) (*GetAppLaunchConfigurationOutput, error)
	DeleteAppLaunchConfiguration(context.Context, *AppRef) (*Empty, error)
	PutAppReplicationConfiguration(context.Context, *PutAppReplicationConfigurationInput) (*PutAppReplicationConfigurationOutput, error)
	GetAppReplicationConfiguration(context.Context, *GetAppReplicationConfigurationInput) (*GetAppReplicationConfigurationOutput, error)
	DeleteAppReplicationConfiguration(context.Context, *AppRef) (*Empty, error)
	StartAppReplication(context.Context, *AppRef) (*Empty, error)
	StopAppReplication(context.Context, *AppRef) (*Empty, error)
	StartOnDemandAppReplication(context.Context, *StartOnDemandAppReplicationInput) (*StartOnDemandAppReplicationOutput, error)
	GenerateTemplate(context.Context, *GenerateTemplateInput) (*GenerateTemplateOutput, error)
	GenerateChangeSet(context.Context, *GenerateChangeSetInput) (*GenerateChangeSetOutput, error)
	LaunchApp(context.Context, *LaunchAppInput) (*LaunchOutput, error)
	TerminateApp(context.Context, *TerminateAppInput) (*LaunchOutput, error)

	// The appliance's operations.
	// ImportAppRightsizing fills an app's launch configuration from a
	// rightsizing CSV, all rows or none.
	ImportAppRightsizing(context.Context, *ImportAppRightsizingInput) (*ImportAppRightsizingOutput, error)
	AddSource(context.Context, *SourceInput) (*AddSourceOutput, error)
	ListSources(context.Context, *ListSourcesInput) (*ListSourcesOutput, error)
	TestSource(context.Context, *SourceRef) (*TestSourceOutput, error)
	RemoveSource(context.Context, *SourceRef) (*RemoveSourceOutput, error)
	GetRegistration(context.Context, *GetRegistrationInput) (*Registration, error)
	Register(context.Context, *RegisterInput) (*RegisterOutput, error)
	GetReplicationRun(context.Context, *GetReplicationRunInput) (*GetReplicationRunOutput, error)
	GetConnectorStatus(context.Context, *GetConnectorStatusInput) (*ConnectorStatus, error)
	GetEvents(context.Context, *GetEventsInput) (*GetEventsOutput, error)
	// VerifyReplicationJob requests a full verification of an incremental
	// job's replicas, by a run started now or the job's next.
	VerifyReplicationJob(context.Context, *VerifyReplicationJobInput) (*VerifyReplicationJobOutput, error)
	// Preflight checks the servers named (every one when none is) and the
	// account now, stores the results and returns them.
	Preflight(context.Context, *PreflightInput) (*PreflightOutput, error)
	// GetFleetStatus reports the fleet's members, leader and leases
	// (OperationNotPermittedException for a connector on its own).
	GetFleetStatus(context.Context, *GetFleetStatusInput) (*FleetStatus, error)
	// ShareFleetKey seals the fleet's secret key for a joining connector's
	// one-time public key (rehost fleet join).
	ShareFleetKey(context.Context, *ShareFleetKeyInput) (*ShareFleetKeyOutput, error)
	// GetBandwidthCap reports the connector's bandwidth cap and the rate
	// in force; SetBandwidthCap validates and stores it (an empty input
	// removes it), in force on every member within seconds.
	GetBandwidthCap(context.Context, *GetBandwidthCapInput) (*BandwidthCap, error)
	SetBandwidthCap(context.Context, *SetBandwidthCapInput) (*BandwidthCap, error)
	// SupportBundle writes a zip of the configuration, recent logs and
	// events, versions and a state summary, every secret redacted.
	SupportBundle(ctx context.Context, w io.Writer) error
	// BackupState writes a backup of the connector's state — the store,
	// copied consistently while the daemon runs, master.key and the TLS
	// certificate — sealed with the backup key, to w. Only the key's
	// recovery code (GetBackupKey) opens it.
	BackupState(ctx context.Context, w io.Writer) error
	// BackupStateToBucket takes the same backup into the staging bucket,
	// outside the staging lifecycle rule, keeping the newest 14.
	BackupStateToBucket(context.Context, *BackupStateToBucketInput) (*BackupStateOutput, error)
	// GetBackupKey returns the recovery code of the backup key, which a
	// restore asks for; the status stops asking for it to be recorded.
	GetBackupKey(context.Context, *GetBackupKeyInput) (*GetBackupKeyOutput, error)
}

// Target prefixes of the X-Amz-Target header.
const (
	SMSTarget    = "AWSServerMigrationService_V2016_10_24"
	RehostTarget = "RehostConnector_V1"
)

// operation describes one operation for the HTTP endpoint and client.
type operation struct {
	target string // SMSTarget or RehostTarget
	// readOnly operations change nothing; read-only keys may call only
	// these.
	readOnly bool
	call     func(ctx context.Context, s Service, decode func(any) error) (any, error)
}

func op[I, O any](target string, readOnly bool, m func(Service, context.Context, *I) (*O, error)) operation {
	return operation{target: target, readOnly: readOnly, call: func(ctx context.Context, s Service, decode func(any) error) (any, error) {
		in := new(I)
		if err := decode(in); err != nil {
			return nil, err
		}
		return m(s, ctx, in)
	}}
}

// ReadOnly reports whether the operation target ("Prefix.Name", as the
// X-Amz-Target header names it) changes nothing: a read-only key may call
// it, and a client may send it again after a failure that left unknown
// whether the connector ran it.
func ReadOnly(target string) bool { return operations[target].readOnly }

// operations maps "Prefix.Name" to its operation; operationNames lists
// the names without prefix, and the endpoint's other route groups.
var (
	operations     = map[string]operation{}
	operationNames = []string{"SupportBundle", "BackupState", "Metrics"}
)

func init() {
	for name, o := range map[string]operation{
		"ImportServerCatalog":               op(SMSTarget, false, Service.ImportServerCatalog),
		"GetServers":                        op(SMSTarget, true, Service.GetServers),
		"DeleteServerCatalog":               op(SMSTarget, false, Service.DeleteServerCatalog),
		"GetConnectors":                     op(SMSTarget, true, Service.GetConnectors),
		"DisassociateConnector":             op(SMSTarget, false, Service.DisassociateConnector),
		"CreateReplicationJob":              op(SMSTarget, false, Service.CreateReplicationJob),
		"GetReplicationJobs":                op(SMSTarget, true, Service.GetReplicationJobs),
		"UpdateReplicationJob":              op(SMSTarget, false, Service.UpdateReplicationJob),
		"DeleteReplicationJob":              op(SMSTarget, false, Service.DeleteReplicationJob),
		"StartOnDemandReplicationRun":       op(SMSTarget, false, Service.StartOnDemandReplicationRun),
		"GetReplicationRuns":                op(SMSTarget, true, Service.GetReplicationRuns),
		"CreateApp":                         op(SMSTarget, false, Service.CreateApp),
		"GetApp":                            op(SMSTarget, true, Service.GetApp),
		"UpdateApp":                         op(SMSTarget, false, Service.UpdateApp),
		"DeleteApp":                         op(SMSTarget, false, Service.DeleteApp),
		"ListApps":                          op(SMSTarget, true, Service.ListApps),
		"PutAppLaunchConfiguration":         op(SMSTarget, false, Service.PutAppLaunchConfiguration),
		"GetAppLaunchConfiguration":         op(SMSTarget, true, Service.GetAppLaunchConfiguration),
		"DeleteAppLaunchConfiguration":      op(SMSTarget, false, Service.DeleteAppLaunchConfiguration),
		"PutAppReplicationConfiguration":    op(SMSTarget, false, Service.PutAppReplicationConfiguration),
		"GetAppReplicationConfiguration":    op(SMSTarget, true, Service.GetAppReplicationConfiguration),
		"DeleteAppReplicationConfiguration": op(SMSTarget, false, Service.DeleteAppReplicationConfiguration),
		"StartAppReplication":               op(SMSTarget, false, Service.StartAppReplication),
		"StopAppReplication":                op(SMSTarget, false, Service.StopAppReplication),
		"StartOnDemandAppReplication":       op(SMSTarget, false, Service.StartOnDemandAppReplication),
		"GenerateTemplate":                  op(SMSTarget, false, Service.GenerateTemplate),
		"GenerateChangeSet":                 op(SMSTarget, false, Service.GenerateChangeSet),
		"LaunchApp":                         op(SMSTarget, false, Service.LaunchApp),
		"TerminateApp":                      op(SMSTarget, false, Service.TerminateApp),
		"ImportAppRightsizing":              op(RehostTarget, false, Service.ImportAppRightsizing),
		"AddSource":                         op(RehostTarget, false, Service.AddSource),
		"ListSources":                       op(RehostTarget, true, Service.ListSources),
		"TestSource":                        op(RehostTarget, true, Service.TestSource),
		"RemoveSource":                      op(RehostTarget, false, Service.RemoveSource),
		"GetRegistration":                   op(RehostTarget, true, Service.GetRegistration),
		"Register":                          op(RehostTarget, false, Service.Register),
		"GetReplicationRun":                 op(RehostTarget, true, Service.GetReplicationRun),
		"GetConnectorStatus":                op(RehostTarget, true, Service.GetConnectorStatus),
		"GetEvents":                         op(RehostTarget, true, Service.GetEvents),
		"Preflight":                         op(RehostTarget, false, Service.Preflight),
		"BackupStateToBucket":               op(RehostTarget, false, Service.BackupStateToBucket),
		"GetBackupKey":                      op(RehostTarget, false, Service.GetBackupKey),
		"VerifyReplicationJob":              op(RehostTarget, false, Service.VerifyReplicationJob),
		"GetFleetStatus":                    op(RehostTarget, true, Service.GetFleetStatus),
		"ShareFleetKey":                     op(RehostTarget, false, Service.ShareFleetKey),
		"GetBandwidthCap":                   op(RehostTarget, true, Service.GetBandwidthCap),
		"SetBandwidthCap":                   op(RehostTarget, false, Service.SetBandwidthCap),
	} {
		operations[o.target+"."+name] = o
		operationNames = append(operationNames, name)
	}
}
