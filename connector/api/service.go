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

	// The appliance's operations.
	AddSource(context.Context, *SourceInput) (*AddSourceOutput, error)
	ListSources(context.Context, *ListSourcesInput) (*ListSourcesOutput, error)
	TestSource(context.Context, *SourceRef) (*TestSourceOutput, error)
	RemoveSource(context.Context, *SourceRef) (*RemoveSourceOutput, error)
	GetRegistration(context.Context, *GetRegistrationInput) (*Registration, error)
	Register(context.Context, *RegisterInput) (*RegisterOutput, error)
	GetReplicationRun(context.Context, *GetReplicationRunInput) (*GetReplicationRunOutput, error)
	GetConnectorStatus(context.Context, *GetConnectorStatusInput) (*ConnectorStatus, error)
	GetEvents(context.Context, *GetEventsInput) (*GetEventsOutput, error)
	// SupportBundle writes a zip of the configuration, recent logs and
	// events, versions and a state summary, every secret redacted.
	SupportBundle(ctx context.Context, w io.Writer) error
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
	operationNames = []string{"SupportBundle", "Metrics"}
)

func init() {
	for name, o := range map[string]operation{
		"ImportServerCatalog":         op(SMSTarget, false, Service.ImportServerCatalog),
		"GetServers":                  op(SMSTarget, true, Service.GetServers),
		"DeleteServerCatalog":         op(SMSTarget, false, Service.DeleteServerCatalog),
		"GetConnectors":               op(SMSTarget, true, Service.GetConnectors),
		"DisassociateConnector":       op(SMSTarget, false, Service.DisassociateConnector),
		"CreateReplicationJob":        op(SMSTarget, false, Service.CreateReplicationJob),
		"GetReplicationJobs":          op(SMSTarget, true, Service.GetReplicationJobs),
		"UpdateReplicationJob":        op(SMSTarget, false, Service.UpdateReplicationJob),
		"DeleteReplicationJob":        op(SMSTarget, false, Service.DeleteReplicationJob),
		"StartOnDemandReplicationRun": op(SMSTarget, false, Service.StartOnDemandReplicationRun),
		"GetReplicationRuns":          op(SMSTarget, true, Service.GetReplicationRuns),
		"AddSource":                   op(RehostTarget, false, Service.AddSource),
		"ListSources":                 op(RehostTarget, true, Service.ListSources),
		"TestSource":                  op(RehostTarget, true, Service.TestSource),
		"RemoveSource":                op(RehostTarget, false, Service.RemoveSource),
		"GetRegistration":             op(RehostTarget, true, Service.GetRegistration),
		"Register":                    op(RehostTarget, false, Service.Register),
		"GetReplicationRun":           op(RehostTarget, true, Service.GetReplicationRun),
		"GetConnectorStatus":          op(RehostTarget, true, Service.GetConnectorStatus),
		"GetEvents":                   op(RehostTarget, true, Service.GetEvents),
	} {
		operations[o.target+"."+name] = o
		operationNames = append(operationNames, name)
	}
}
