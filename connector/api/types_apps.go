package api

// Application migration, in the shapes of SMS's app operations. Members
// rehost adds are named rehost…: several security groups and a private
// address per server, user data given inline, a volume type and tags (what
// a rightsizing CSV sets), a group's explicit waits, the test launch's
// networks, and each launch with its per-server boot verdicts.

// Tag is a key and value.
type Tag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// S3Location is an object in S3.
type S3Location struct {
	Bucket string `json:"bucket,omitempty"`
	Key    string `json:"key,omitempty"`
}

// ServerGroup is a set of servers launched together.
type ServerGroup struct {
	ServerGroupID string   `json:"serverGroupId,omitempty"`
	Name          string   `json:"name,omitempty"`
	ServerList    []Server `json:"serverList"`
}

// LaunchDetails is the cutover's stack.
type LaunchDetails struct {
	LatestLaunchTime Time   `json:"latestLaunchTime,omitzero"`
	StackName        string `json:"stackName,omitempty"`
	StackID          string `json:"stackId,omitempty"`
}

// AppSummary is an application and its rolled-up status.
type AppSummary struct {
	AppID                          string         `json:"appId"`
	Name                           string         `json:"name"`
	Description                    string         `json:"description,omitempty"`
	Status                         string         `json:"status"`
	StatusMessage                  string         `json:"statusMessage,omitempty"`
	ReplicationConfigurationStatus string         `json:"replicationConfigurationStatus"`
	ReplicationStatus              string         `json:"replicationStatus"`
	ReplicationStatusMessage       string         `json:"replicationStatusMessage,omitempty"`
	LatestReplicationTime          Time           `json:"latestReplicationTime,omitzero"`
	LaunchConfigurationStatus      string         `json:"launchConfigurationStatus"`
	LaunchStatus                   string         `json:"launchStatus"`
	LaunchStatusMessage            string         `json:"launchStatusMessage,omitempty"`
	LaunchDetails                  *LaunchDetails `json:"launchDetails,omitempty"`
	CreationTime                   Time           `json:"creationTime,omitzero"`
	LastModified                   Time           `json:"lastModified,omitzero"`
	RoleName                       string         `json:"roleName,omitempty"`
	TotalServerGroups              int            `json:"totalServerGroups"`
	TotalServers                   int            `json:"totalServers"`
}

// CreateAppInput creates an application.
type CreateAppInput struct {
	Name         string        `json:"name"`
	Description  string        `json:"description,omitempty"`
	RoleName     string        `json:"roleName,omitempty"`
	ClientToken  string        `json:"clientToken,omitempty"`
	ServerGroups []ServerGroup `json:"serverGroups,omitempty"`
	Tags         []Tag         `json:"tags,omitempty"`
}

// AppOutput is an application with its groups and tags: the answer of
// CreateApp, UpdateApp and GetApp.
type AppOutput struct {
	AppSummary   *AppSummary   `json:"appSummary"`
	ServerGroups []ServerGroup `json:"serverGroups"`
	Tags         []Tag         `json:"tags"`
	// RehostLaunches are the app's launches, newest first (GetApp).
	RehostLaunches []AppLaunch `json:"rehostLaunches,omitempty"`
}

// GetAppInput names an application.
type GetAppInput struct {
	AppID string `json:"appId"`
}

// UpdateAppInput changes the members given; ServerGroups and Tags, when
// given, replace the app's.
type UpdateAppInput struct {
	AppID        string        `json:"appId"`
	Name         *string       `json:"name,omitempty"`
	Description  *string       `json:"description,omitempty"`
	RoleName     *string       `json:"roleName,omitempty"`
	ServerGroups []ServerGroup `json:"serverGroups,omitempty"`
	Tags         []Tag         `json:"tags,omitempty"`
}

// DeleteAppInput deletes an application; with ForceTerminateApp its
// launches are terminated first, with ForceStopAppReplication its servers'
// replication jobs are deleted.
type DeleteAppInput struct {
	AppID                   string `json:"appId"`
	ForceStopAppReplication bool   `json:"forceStopAppReplication,omitempty"`
	ForceTerminateApp       bool   `json:"forceTerminateApp,omitempty"`
}

// DeleteAppOutput has no members.
type DeleteAppOutput struct{}

// ListAppsInput pages through the applications, or lists those named.
type ListAppsInput struct {
	AppIDs     []string `json:"appIds,omitempty"`
	NextToken  string   `json:"nextToken,omitempty"`
	MaxResults int      `json:"maxResults,omitempty"`
}

// ListAppsOutput is a page of applications.
type ListAppsOutput struct {
	Apps      []AppSummary `json:"apps"`
	NextToken string       `json:"nextToken,omitempty"`
}

// UserData locates a server's user data in S3.
type UserData struct {
	S3Location *S3Location `json:"s3Location,omitempty"`
}

// ServerLaunchConfiguration is how one server is launched.
type ServerLaunchConfiguration struct {
	Server                   *Server     `json:"server,omitempty"`
	LogicalID                string      `json:"logicalId,omitempty"`
	Vpc                      string      `json:"vpc,omitempty"`
	Subnet                   string      `json:"subnet,omitempty"`
	SecurityGroup            string      `json:"securityGroup,omitempty"`
	Ec2KeyName               string      `json:"ec2KeyName,omitempty"`
	UserData                 *UserData   `json:"userData,omitempty"`
	InstanceType             string      `json:"instanceType,omitempty"`
	AssociatePublicIPAddress *bool       `json:"associatePublicIpAddress,omitempty"`
	IamInstanceProfileName   string      `json:"iamInstanceProfileName,omitempty"`
	ConfigureScript          *S3Location `json:"configureScript,omitempty"`
	ConfigureScriptType      string      `json:"configureScriptType,omitempty"`
	// rehost's: every security group (SecurityGroup is the first), a
	// private address, user data given inline, the volume type and tags.
	RehostSecurityGroups   []string `json:"rehostSecurityGroups,omitempty"`
	RehostPrivateIPAddress string   `json:"rehostPrivateIpAddress,omitempty"`
	RehostUserData         string   `json:"rehostUserData,omitempty"`
	RehostVolumeType       string   `json:"rehostVolumeType,omitempty"`
	RehostTags             []Tag    `json:"rehostTags,omitempty"`
	// RehostValidationCommand runs on the instance through SSM Run Command
	// once it booted; a nonzero exit fails its group.
	RehostValidationCommand string `json:"rehostValidationCommand,omitempty"`
}

// ServerGroupLaunchConfiguration is one group's launch configuration.
type ServerGroupLaunchConfiguration struct {
	ServerGroupID              string                      `json:"serverGroupId"`
	LaunchOrder                *int                        `json:"launchOrder,omitempty"`
	ServerLaunchConfigurations []ServerLaunchConfiguration `json:"serverLaunchConfigurations"`
	// RehostAfter names groups this one waits for beyond those of lower
	// launch order.
	RehostAfter []string `json:"rehostAfter,omitempty"`
}

// TestLaunch is where test launches go (rehost's).
type TestLaunch struct {
	Vpc            string   `json:"vpc,omitempty"`
	Subnet         string   `json:"subnet,omitempty"`
	SecurityGroups []string `json:"securityGroups,omitempty"`
	NameSuffix     string   `json:"nameSuffix,omitempty"`
}

// PutAppLaunchConfigurationInput sets how an application is launched.
type PutAppLaunchConfigurationInput struct {
	AppID                           string                           `json:"appId"`
	RoleName                        string                           `json:"roleName,omitempty"`
	AutoLaunch                      *bool                            `json:"autoLaunch,omitempty"`
	ServerGroupLaunchConfigurations []ServerGroupLaunchConfiguration `json:"serverGroupLaunchConfigurations,omitempty"`
	RehostTestLaunch                *TestLaunch                      `json:"rehostTestLaunch,omitempty"`
}

// PutAppLaunchConfigurationOutput has no members.
type PutAppLaunchConfigurationOutput struct{}

// GetAppLaunchConfigurationInput names an application.
type GetAppLaunchConfigurationInput struct {
	AppID string `json:"appId"`
}

// GetAppLaunchConfigurationOutput is an application's launch configuration.
type GetAppLaunchConfigurationOutput struct {
	AppID                           string                           `json:"appId"`
	RoleName                        string                           `json:"roleName,omitempty"`
	AutoLaunch                      bool                             `json:"autoLaunch"`
	ServerGroupLaunchConfigurations []ServerGroupLaunchConfiguration `json:"serverGroupLaunchConfigurations"`
	RehostTestLaunch                *TestLaunch                      `json:"rehostTestLaunch,omitempty"`
}

// ServerReplicationParameters are one server's job settings.
type ServerReplicationParameters struct {
	SeedTime                 *Time  `json:"seedTime,omitempty"`
	Frequency                *int   `json:"frequency,omitempty"`
	RunOnce                  *bool  `json:"runOnce,omitempty"`
	LicenseType              string `json:"licenseType,omitempty"`
	NumberOfRecentAmisToKeep *int   `json:"numberOfRecentAmisToKeep,omitempty"`
	Encrypted                *bool  `json:"encrypted,omitempty"`
	KmsKeyID                 string `json:"kmsKeyId,omitempty"`
}

// ServerReplicationConfiguration is a server and its parameters.
type ServerReplicationConfiguration struct {
	Server                      *Server                      `json:"server,omitempty"`
	ServerReplicationParameters *ServerReplicationParameters `json:"serverReplicationParameters,omitempty"`
}

// ServerGroupReplicationConfiguration is one group's replication settings.
type ServerGroupReplicationConfiguration struct {
	ServerGroupID                   string                           `json:"serverGroupId"`
	ServerReplicationConfigurations []ServerReplicationConfiguration `json:"serverReplicationConfigurations"`
}

// PutAppReplicationConfigurationInput sets each server's replication.
type PutAppReplicationConfigurationInput struct {
	AppID                                string                                `json:"appId"`
	ServerGroupReplicationConfigurations []ServerGroupReplicationConfiguration `json:"serverGroupReplicationConfigurations,omitempty"`
}

// PutAppReplicationConfigurationOutput has no members.
type PutAppReplicationConfigurationOutput struct{}

// GetAppReplicationConfigurationInput names an application.
type GetAppReplicationConfigurationInput struct {
	AppID string `json:"appId"`
}

// GetAppReplicationConfigurationOutput is an application's replication
// configuration.
type GetAppReplicationConfigurationOutput struct {
	ServerGroupReplicationConfigurations []ServerGroupReplicationConfiguration `json:"serverGroupReplicationConfigurations"`
}

// AppRef names an application: the input of StartAppReplication,
// StopAppReplication and the configuration deletions.
type AppRef struct {
	AppID string `json:"appId"`
}

// Empty is an answer without members.
type Empty struct{}

// StartOnDemandAppReplicationInput starts a run of every server's job.
type StartOnDemandAppReplicationInput struct {
	AppID       string `json:"appId"`
	Description string `json:"description,omitempty"`
}

// StartOnDemandAppReplicationOutput lists, beyond SMS, the runs started.
type StartOnDemandAppReplicationOutput struct {
	RehostReplicationRunIDs []string `json:"rehostReplicationRunIds,omitempty"`
}

// GenerateTemplateInput asks for an application's template.
type GenerateTemplateInput struct {
	AppID          string `json:"appId"`
	TemplateFormat string `json:"templateFormat,omitempty"` // JSON (default) or YAML
}

// GenerateTemplateOutput locates the template in the staging bucket; it
// also carries it (rehost's).
type GenerateTemplateOutput struct {
	S3Location         *S3Location `json:"s3Location,omitempty"`
	RehostTemplateBody string      `json:"rehostTemplateBody,omitempty"`
}

// GenerateChangeSetInput asks what a delta launch would change.
type GenerateChangeSetInput struct {
	AppID           string `json:"appId"`
	ChangesetFormat string `json:"changesetFormat,omitempty"`
}

// StackChange is one change a change set would make.
type StackChange struct {
	Action       string `json:"action"`
	LogicalID    string `json:"logicalId"`
	PhysicalID   string `json:"physicalId,omitempty"`
	ResourceType string `json:"resourceType"`
	Replacement  string `json:"replacement,omitempty"`
}

// GenerateChangeSetOutput locates the change set's template; it also
// carries the changes CloudFormation worked out (rehost's).
type GenerateChangeSetOutput struct {
	S3Location              *S3Location   `json:"s3Location,omitempty"`
	RehostChangeSetID       string        `json:"rehostChangeSetId,omitempty"`
	RehostChangeSetStatus   string        `json:"rehostChangeSetStatus,omitempty"`
	RehostChangeSetReason   string        `json:"rehostChangeSetReason,omitempty"`
	RehostChanges           []StackChange `json:"rehostChanges,omitempty"`
	RehostChangeSetTemplate string        `json:"rehostChangeSetTemplate,omitempty"`
}

// LaunchAppInput launches an application: the cutover, or with RehostTest
// a test launch beside it.
type LaunchAppInput struct {
	AppID      string `json:"appId"`
	RehostTest bool   `json:"rehostTest,omitempty"`
}

// TerminateAppInput terminates the cutover, or with RehostTest the test
// launch.
type TerminateAppInput struct {
	AppID      string `json:"appId"`
	RehostTest bool   `json:"rehostTest,omitempty"`
}

// LaunchOutput carries, beyond SMS, the launch concerned.
type LaunchOutput struct {
	RehostLaunch *AppLaunch `json:"rehostLaunch,omitempty"`
}

// LaunchedServer is one server of a launch and its boot check.
type LaunchedServer struct {
	ServerID   string   `json:"serverId"`
	Name       string   `json:"name,omitempty"`
	LogicalID  string   `json:"logicalId"`
	InstanceID string   `json:"instanceId,omitempty"`
	PrivateIP  string   `json:"privateIp,omitempty"`
	PublicIP   string   `json:"publicIp,omitempty"`
	Boot       string   `json:"boot,omitempty"` // booted, failed to boot, no output yet, booting
	BootDetail string   `json:"bootDetail,omitempty"`
	Console    []string `json:"console,omitempty"`
	CheckedAt  Time     `json:"checkedAt,omitzero"`
	// Validation is the validation command's outcome, when one is set.
	Validation *Validation `json:"validation,omitempty"`
}

// Validation is a launched server's validation command and how it went.
type Validation struct {
	Command  string `json:"command"`
	Status   string `json:"status,omitempty"` // running, waiting for the SSM agent, passed, failed, not run
	ExitCode int    `json:"exitCode"`
	Output   string `json:"output,omitempty"`
}

// AppLaunch is one launch of an application (rehost's).
type AppLaunch struct {
	LaunchID      string           `json:"launchId"`
	Kind          string           `json:"kind"` // cutover or test
	State         string           `json:"state"`
	StackName     string           `json:"stackName"`
	StackID       string           `json:"stackId,omitempty"`
	StackStatus   string           `json:"stackStatus,omitempty"`
	StatusMessage string           `json:"statusMessage,omitempty"`
	LaunchedAt    Time             `json:"launchedAt,omitzero"`
	CreatedAt     Time             `json:"createdAt,omitzero"`
	Servers       []LaunchedServer `json:"servers"`
}

// ImportAppRightsizingInput fills an application's launch configuration
// from a rightsizing CSV (rehost's).
type ImportAppRightsizingInput struct {
	AppID string `json:"appId"`
	CSV   string `json:"csv"`
}

// RightsizedServer is what the import set for one server.
type RightsizedServer struct {
	ServerID     string `json:"serverId"`
	Name         string `json:"name"`
	InstanceType string `json:"instanceType"`
	Suggested    bool   `json:"suggested,omitempty"`
	Row          int    `json:"row,omitempty"`
}

// ImportAppRightsizingOutput lists every server's instance type after the
// import.
type ImportAppRightsizingOutput struct {
	Servers []RightsizedServer `json:"servers"`
}
