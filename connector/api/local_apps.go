package api

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/app"
	"github.com/rehost/rehost/pkg/store"
	awstarget "github.com/rehost/rehost/pkg/target/aws"
)

// SMS's application operations on the state directory: the store keeps the
// apps, connector/app decides what they mean, and the launches run through
// the daemon's launcher.

// appErr maps the store's and connector/app's error classes to SMS's
// exceptions.
func appErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid), errors.Is(err, app.ErrInvalid):
		return Errorf(ErrInvalidParameter, "%v", err)
	case errors.Is(err, store.ErrConflict), errors.Is(err, app.ErrNotReady):
		return Errorf(ErrOperationNotPermitted, "%v", err)
	}
	return internal(err)
}

func needApp(id string) error {
	if id == "" {
		return Errorf(ErrMissingRequiredParameter, "appId is required")
	}
	return nil
}

func (l *Local) getApp(ctx context.Context, id string) (store.App, error) {
	if err := needApp(id); err != nil {
		return store.App{}, err
	}
	a, err := l.D.Store.GetApp(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return a, Errorf(ErrInvalidParameter, "app %s does not exist: see ListApps or 'rehost app list'", id)
	}
	return a, appErr(err)
}

func tagsIn(ts []Tag) []store.Tag {
	var out []store.Tag
	for _, t := range ts {
		out = append(out, store.Tag(t))
	}
	return out
}

func tagsOut(ts []store.Tag) []Tag {
	out := []Tag{}
	for _, t := range ts {
		out = append(out, Tag(t))
	}
	return out
}

// groupsIn reads SMS server groups: each server by its id.
func groupsIn(gs []ServerGroup) ([]store.ServerGroup, error) {
	var out []store.ServerGroup
	for i, g := range gs {
		sg := store.ServerGroup{GroupID: g.ServerGroupID, Name: g.Name, ServerIDs: []string{}}
		for j, s := range g.ServerList {
			if s.ServerID == "" {
				return nil, Errorf(ErrMissingRequiredParameter, "serverGroups[%d].serverList[%d]: serverId is required", i, j)
			}
			sg.ServerIDs = append(sg.ServerIDs, s.ServerID)
		}
		out = append(out, sg)
	}
	return out, nil
}

func (c *catalog) groupsOut(a store.App) []ServerGroup {
	out := []ServerGroup{}
	for _, g := range a.Groups {
		sg := ServerGroup{ServerGroupID: g.GroupID, Name: g.Name, ServerList: []Server{}}
		for _, id := range g.ServerIDs {
			if s, ok := c.servers[id]; ok {
				sg.ServerList = append(sg.ServerList, c.server(s))
			} else {
				sg.ServerList = append(sg.ServerList, Server{ServerID: id})
			}
		}
		out = append(out, sg)
	}
	return out
}

// appSummary rolls the app's status up from its servers' jobs and its
// launches.
func (l *Local) appSummary(ctx context.Context, c *catalog, a store.App, launches []store.Launch) (AppSummary, error) {
	var reps []app.ServerReplication
	for _, id := range a.Servers() {
		r := app.ServerReplication{Name: cmp.Or(c.servers[id].Name, id)}
		for i := range c.jobs {
			if j := c.jobs[i]; j.ServerID == id && (r.Job == nil || r.Job.State == store.JobDeleted) {
				r.Job = &c.jobs[i]
			}
		}
		if r.Job != nil {
			runs, err := l.D.Store.ListRuns(ctx, r.Job.ReplicationJobID, 20)
			if err != nil {
				return AppSummary{}, internal(err)
			}
			for i, run := range runs {
				if i == 0 {
					r.Latest = &runs[0]
				}
				if run.State == store.RunCompleted {
					r.Completed++
					if run.CompletedTime.After(r.LastCompleted) {
						r.LastCompleted = run.CompletedTime
					}
				}
			}
		}
		reps = append(reps, r)
	}
	s := AppSummary{AppID: a.AppID, Name: a.Name, Description: a.Description, Status: "ACTIVE", RoleName: a.RoleName,
		CreationTime: At(a.CreatedAt), LastModified: At(a.UpdatedAt), TotalServerGroups: len(a.Groups), TotalServers: len(a.Servers()),
		ReplicationConfigurationStatus: "NOT_CONFIGURED", LaunchConfigurationStatus: "NOT_CONFIGURED"}
	if a.Replication != nil {
		s.ReplicationConfigurationStatus = "CONFIGURED"
	}
	if a.Launch != nil {
		s.LaunchConfigurationStatus = "CONFIGURED"
	}
	var latest time.Time
	s.ReplicationStatus, s.ReplicationStatusMessage, latest = app.ReplicationStatus(a, reps)
	s.LatestReplicationTime = At(latest)
	var configErr error
	if a.Launch != nil {
		names := map[string]string{}
		for id, srv := range c.servers {
			names[id] = srv.Name
		}
		configErr = app.CheckGroups(a)
		if configErr == nil {
			configErr = app.CheckLaunchConfig(a, names)
		}
	}
	s.LaunchStatus, s.LaunchStatusMessage = app.LaunchStatus(a, configErr, launches)
	for _, ln := range launches {
		if ln.Kind == store.LaunchCutover && ln.StackID != "" {
			s.LaunchDetails = &LaunchDetails{LatestLaunchTime: At(cmp.Or(ln.LaunchedAt, ln.CreatedAt)), StackName: ln.StackName, StackID: ln.StackID}
			break
		}
	}
	return s, nil
}

func launchOut(ln store.Launch) AppLaunch {
	out := AppLaunch{LaunchID: ln.LaunchID, Kind: string(ln.Kind), State: string(ln.State), StackName: ln.StackName, StackID: ln.StackID,
		StackStatus: ln.StackStatus, StatusMessage: ln.StatusMessage, LaunchedAt: At(ln.LaunchedAt), CreatedAt: At(ln.CreatedAt),
		Servers: []LaunchedServer{}}
	for _, s := range ln.Servers {
		ls := LaunchedServer{ServerID: s.ServerID, Name: s.Name, LogicalID: s.LogicalID, InstanceID: s.InstanceID,
			PrivateIP: s.PrivateIP, PublicIP: s.PublicIP, Boot: s.Boot, BootDetail: s.BootDetail, Console: s.Console, CheckedAt: At(s.CheckedAt)}
		if v := s.Validation; v != nil {
			ls.Validation = &Validation{Command: v.Command, Status: v.Status, ExitCode: v.ExitCode, Output: v.Output}
		}
		out.Servers = append(out.Servers, ls)
	}
	return out
}

func (l *Local) appOutput(ctx context.Context, a store.App, withLaunches bool) (*AppOutput, error) {
	c, err := l.catalog(ctx)
	if err != nil {
		return nil, err
	}
	launches, err := l.D.Store.ListLaunches(ctx, a.AppID)
	if err != nil {
		return nil, internal(err)
	}
	s, err := l.appSummary(ctx, c, a, launches)
	if err != nil {
		return nil, err
	}
	out := &AppOutput{AppSummary: &s, ServerGroups: c.groupsOut(a), Tags: tagsOut(a.Tags)}
	if withLaunches {
		for _, ln := range launches {
			out.RehostLaunches = append(out.RehostLaunches, launchOut(ln))
		}
	}
	return out, nil
}

// CreateApp creates an application of server groups.
func (l *Local) CreateApp(ctx context.Context, in *CreateAppInput) (*AppOutput, error) {
	if strings.TrimSpace(in.Name) == "" {
		return nil, Errorf(ErrMissingRequiredParameter, "name is required")
	}
	groups, err := groupsIn(in.ServerGroups)
	if err != nil {
		return nil, err
	}
	a := store.App{Name: in.Name, Description: in.Description, RoleName: in.RoleName, Groups: groups, Tags: tagsIn(in.Tags)}
	if err := app.CheckGroups(a); err != nil {
		return nil, appErr(err)
	}
	a, err = l.D.Store.CreateApp(ctx, a)
	if err != nil {
		return nil, appErr(err)
	}
	return l.appOutput(ctx, a, false)
}

// GetApp returns an application with its groups, status and launches.
func (l *Local) GetApp(ctx context.Context, in *GetAppInput) (*AppOutput, error) {
	a, err := l.getApp(ctx, in.AppID)
	if err != nil {
		return nil, err
	}
	return l.appOutput(ctx, a, true)
}

// UpdateApp changes an application. New groups replace the old; the launch
// and replication configurations keep what is still the app's.
func (l *Local) UpdateApp(ctx context.Context, in *UpdateAppInput) (*AppOutput, error) {
	if _, err := l.getApp(ctx, in.AppID); err != nil {
		return nil, err
	}
	var groups []store.ServerGroup
	if in.ServerGroups != nil {
		var err error
		if groups, err = groupsIn(in.ServerGroups); err != nil {
			return nil, err
		}
	}
	a, err := l.D.Store.UpdateApp(ctx, in.AppID, func(a *store.App) error {
		if in.Name != nil {
			a.Name = *in.Name
		}
		if in.Description != nil {
			a.Description = *in.Description
		}
		if in.RoleName != nil {
			a.RoleName = *in.RoleName
		}
		if in.Tags != nil {
			a.Tags = tagsIn(in.Tags)
		}
		if in.ServerGroups != nil {
			a.Groups = groups
			if a.Launch != nil {
				a.Launch = app.DefaultLaunchConfig(*a)
			}
			if a.Replication != nil {
				servers := a.Servers()
				a.Replication.Servers = slices.DeleteFunc(a.Replication.Servers, func(r store.ServerReplication) bool {
					return !slices.Contains(servers, r.ServerID)
				})
			}
		}
		return app.CheckGroups(*a)
	})
	if err != nil {
		return nil, appErr(err)
	}
	return l.appOutput(ctx, a, false)
}

// DeleteApp deletes an application, refused while it has a launch that is
// not terminated unless ForceTerminateApp, which terminates them and waits.
func (l *Local) DeleteApp(ctx context.Context, in *DeleteAppInput) (*DeleteAppOutput, error) {
	a, err := l.getApp(ctx, in.AppID)
	if err != nil {
		return nil, err
	}
	if in.ForceTerminateApp {
		if err := l.terminateAll(ctx, a); err != nil {
			return nil, err
		}
	}
	if in.ForceStopAppReplication {
		if _, err := l.StopAppReplication(ctx, &AppRef{AppID: a.AppID}); err != nil {
			return nil, err
		}
	}
	if err := l.D.Store.DeleteApp(ctx, a.AppID); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, Errorf(ErrOperationNotPermitted, "%v (TerminateApp, or DeleteApp with forceTerminateApp)", err)
		}
		return nil, appErr(err)
	}
	return &DeleteAppOutput{}, nil
}

// terminateAll terminates every live launch of the app and waits until
// their stacks are gone.
func (l *Local) terminateAll(ctx context.Context, a store.App) error {
	for _, kind := range []store.LaunchKind{store.LaunchCutover, store.LaunchTest} {
		_, err := l.D.Apps.Terminate(ctx, a.AppID, kind)
		if err != nil && !errors.Is(err, app.ErrNotReady) {
			return appErr(err)
		}
	}
	for {
		launches, err := l.D.Store.ListLaunches(ctx, a.AppID)
		if err != nil {
			return internal(err)
		}
		if !slices.ContainsFunc(launches, func(x store.Launch) bool { return x.State != store.LaunchTerminated }) {
			return nil
		}
		if _, err := l.D.Apps.Reconcile(ctx); err != nil {
			return appErr(err)
		}
		select {
		case <-ctx.Done():
			return internal(ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// ListApps lists applications by name, or those named.
func (l *Local) ListApps(ctx context.Context, in *ListAppsInput) (*ListAppsOutput, error) {
	apps, err := l.D.Store.ListApps(ctx)
	if err != nil {
		return nil, internal(err)
	}
	if len(in.AppIDs) > 0 {
		apps = slices.DeleteFunc(apps, func(a store.App) bool { return !slices.Contains(in.AppIDs, a.AppID) })
	}
	pg, next, err := page(apps, in.NextToken, in.MaxResults)
	if err != nil {
		return nil, err
	}
	c, err := l.catalog(ctx)
	if err != nil {
		return nil, err
	}
	out := &ListAppsOutput{Apps: []AppSummary{}, NextToken: next}
	for _, a := range pg {
		launches, err := l.D.Store.ListLaunches(ctx, a.AppID)
		if err != nil {
			return nil, internal(err)
		}
		s, err := l.appSummary(ctx, c, a, launches)
		if err != nil {
			return nil, err
		}
		out.Apps = append(out.Apps, s)
	}
	return out, nil
}

// appServers reads the app's servers from the catalog.
func (l *Local) appServers(ctx context.Context, a store.App) (map[string]store.Server, error) {
	out := map[string]store.Server{}
	for _, id := range a.Servers() {
		s, err := l.D.Store.GetServer(ctx, id)
		if err != nil {
			return nil, appErr(err)
		}
		out[id] = s
	}
	return out, nil
}

// PutAppLaunchConfiguration sets how an application is launched, replacing
// what was set; groups and servers left out get defaults, and a server
// without an instance type gets one suggested from its CPUs and memory. The
// test launch's networks stay when none are given.
func (l *Local) PutAppLaunchConfiguration(ctx context.Context, in *PutAppLaunchConfigurationInput) (*PutAppLaunchConfigurationOutput, error) {
	a, err := l.getApp(ctx, in.AppID)
	if err != nil {
		return nil, err
	}
	lc := &store.LaunchConfig{RoleName: in.RoleName, AutoLaunch: in.AutoLaunch != nil && *in.AutoLaunch}
	if t := in.RehostTestLaunch; t != nil {
		lc.Test = &store.TestLaunchConfig{VPC: t.Vpc, Subnet: t.Subnet, SecurityGroups: t.SecurityGroups, NameSuffix: t.NameSuffix}
	} else if a.Launch != nil {
		lc.Test = a.Launch.Test
	}
	for i, g := range in.ServerGroupLaunchConfigurations {
		if g.ServerGroupID == "" {
			return nil, Errorf(ErrMissingRequiredParameter, "serverGroupLaunchConfigurations[%d]: serverGroupId is required", i)
		}
		gl := store.GroupLaunch{GroupID: g.ServerGroupID, LaunchOrder: i + 1, After: g.RehostAfter}
		if g.LaunchOrder != nil {
			gl.LaunchOrder = *g.LaunchOrder
		}
		for j, s := range g.ServerLaunchConfigurations {
			if s.Server == nil || s.Server.ServerID == "" {
				return nil, Errorf(ErrMissingRequiredParameter, "serverGroupLaunchConfigurations[%d].serverLaunchConfigurations[%d]: server.serverId is required", i, j)
			}
			sl := store.ServerLaunch{ServerID: s.Server.ServerID, LogicalID: s.LogicalID, InstanceType: s.InstanceType, VPC: s.Vpc,
				Subnet: s.Subnet, KeyName: s.Ec2KeyName, PrivateIP: s.RehostPrivateIPAddress, AssociatePublicIP: s.AssociatePublicIPAddress,
				InstanceProfile: s.IamInstanceProfileName, UserData: s.RehostUserData, ConfigureScriptType: s.ConfigureScriptType,
				VolumeType: s.RehostVolumeType, Tags: tagsIn(s.RehostTags), ValidationCommand: s.RehostValidationCommand}
			if s.SecurityGroup != "" {
				sl.SecurityGroups = append(sl.SecurityGroups, s.SecurityGroup)
			}
			for _, g := range s.RehostSecurityGroups {
				if !slices.Contains(sl.SecurityGroups, g) {
					sl.SecurityGroups = append(sl.SecurityGroups, g)
				}
			}
			if s.UserData != nil && s.UserData.S3Location != nil {
				sl.UserDataS3 = &store.S3Location{Bucket: s.UserData.S3Location.Bucket, Key: s.UserData.S3Location.Key}
			}
			if s.ConfigureScript != nil {
				sl.ConfigureScript = &store.S3Location{Bucket: s.ConfigureScript.Bucket, Key: s.ConfigureScript.Key}
			}
			if sl.VolumeType != "" && !slices.Contains(app.VolumeTypes, sl.VolumeType) {
				return nil, Errorf(ErrInvalidParameter, "server %s: volume type %q is not one of %s", sl.ServerID, sl.VolumeType, strings.Join(app.VolumeTypes, ", "))
			}
			gl.Servers = append(gl.Servers, sl)
		}
		lc.Groups = append(lc.Groups, gl)
	}
	servers, err := l.appServers(ctx, a)
	if err != nil {
		return nil, err
	}
	full, err := app.Configure(a, lc, servers)
	if err != nil {
		return nil, appErr(err)
	}
	if _, err := l.D.Store.UpdateApp(ctx, a.AppID, func(x *store.App) error {
		if !slices.Equal(x.Servers(), a.Servers()) {
			return fmt.Errorf("%w: the app's servers changed meanwhile: put the launch configuration again", store.ErrConflict)
		}
		x.Launch = full
		return nil
	}); err != nil {
		return nil, appErr(err)
	}
	return &PutAppLaunchConfigurationOutput{}, nil
}

// GetAppLaunchConfiguration returns how an application is launched.
func (l *Local) GetAppLaunchConfiguration(ctx context.Context, in *GetAppLaunchConfigurationInput) (*GetAppLaunchConfigurationOutput, error) {
	a, err := l.getApp(ctx, in.AppID)
	if err != nil {
		return nil, err
	}
	out := &GetAppLaunchConfigurationOutput{AppID: a.AppID, ServerGroupLaunchConfigurations: []ServerGroupLaunchConfiguration{}}
	if a.Launch == nil {
		return out, nil
	}
	c, err := l.catalog(ctx)
	if err != nil {
		return nil, err
	}
	lc := a.Launch
	out.RoleName, out.AutoLaunch = lc.RoleName, lc.AutoLaunch
	if t := lc.Test; t != nil {
		out.RehostTestLaunch = &TestLaunch{Vpc: t.VPC, Subnet: t.Subnet, SecurityGroups: t.SecurityGroups, NameSuffix: t.NameSuffix}
	}
	for _, g := range lc.Groups {
		order := g.LaunchOrder
		sg := ServerGroupLaunchConfiguration{ServerGroupID: g.GroupID, LaunchOrder: &order, RehostAfter: g.After,
			ServerLaunchConfigurations: []ServerLaunchConfiguration{}}
		for _, s := range g.Servers {
			srv := c.server(c.servers[s.ServerID])
			sl := ServerLaunchConfiguration{Server: &srv, LogicalID: s.LogicalID, Vpc: s.VPC, Subnet: s.Subnet, Ec2KeyName: s.KeyName,
				InstanceType: s.InstanceType, AssociatePublicIPAddress: s.AssociatePublicIP, IamInstanceProfileName: s.InstanceProfile,
				ConfigureScriptType: s.ConfigureScriptType, RehostSecurityGroups: s.SecurityGroups, RehostPrivateIPAddress: s.PrivateIP,
				RehostUserData: s.UserData, RehostVolumeType: s.VolumeType, RehostTags: tagsOut(s.Tags), RehostValidationCommand: s.ValidationCommand}
			if len(s.SecurityGroups) > 0 {
				sl.SecurityGroup = s.SecurityGroups[0]
			}
			if s.UserDataS3 != nil {
				sl.UserData = &UserData{S3Location: &S3Location{Bucket: s.UserDataS3.Bucket, Key: s.UserDataS3.Key}}
			}
			if s.ConfigureScript != nil {
				sl.ConfigureScript = &S3Location{Bucket: s.ConfigureScript.Bucket, Key: s.ConfigureScript.Key}
			}
			sg.ServerLaunchConfigurations = append(sg.ServerLaunchConfigurations, sl)
		}
		out.ServerGroupLaunchConfigurations = append(out.ServerGroupLaunchConfigurations, sg)
	}
	return out, nil
}

// DeleteAppLaunchConfiguration removes an application's launch
// configuration.
func (l *Local) DeleteAppLaunchConfiguration(ctx context.Context, in *AppRef) (*Empty, error) {
	if _, err := l.getApp(ctx, in.AppID); err != nil {
		return nil, err
	}
	_, err := l.D.Store.UpdateApp(ctx, in.AppID, func(a *store.App) error { a.Launch = nil; return nil })
	return &Empty{}, appErr(err)
}

// PutAppReplicationConfiguration sets the replication parameters of the
// application's servers.
func (l *Local) PutAppReplicationConfiguration(ctx context.Context, in *PutAppReplicationConfigurationInput) (*PutAppReplicationConfigurationOutput, error) {
	a, err := l.getApp(ctx, in.AppID)
	if err != nil {
		return nil, err
	}
	groupOf := map[string]string{}
	for _, g := range a.Groups {
		for _, s := range g.ServerIDs {
			groupOf[s] = g.GroupID
		}
	}
	rc := &store.ReplicationConfig{}
	for i, g := range in.ServerGroupReplicationConfigurations {
		for j, s := range g.ServerReplicationConfigurations {
			if s.Server == nil || s.Server.ServerID == "" {
				return nil, Errorf(ErrMissingRequiredParameter, "serverGroupReplicationConfigurations[%d].serverReplicationConfigurations[%d]: server.serverId is required", i, j)
			}
			id := s.Server.ServerID
			switch {
			case groupOf[id] == "":
				return nil, Errorf(ErrInvalidParameter, "server %s is not in app %q", id, a.Name)
			case g.ServerGroupID != "" && groupOf[id] != g.ServerGroupID:
				return nil, Errorf(ErrInvalidParameter, "server %s is not in server group %s of app %q", id, g.ServerGroupID, a.Name)
			case slices.ContainsFunc(rc.Servers, func(r store.ServerReplication) bool { return r.ServerID == id }):
				return nil, Errorf(ErrInvalidParameter, "server %s is configured twice", id)
			}
			sr := store.ServerReplication{ServerID: id, LicenseType: store.LicenseAWS, Frequency: 12}
			if p := s.ServerReplicationParameters; p != nil {
				if p.SeedTime != nil {
					sr.SeedTime = p.SeedTime.Time
				}
				if p.Frequency != nil {
					sr.Frequency = *p.Frequency
				}
				sr.RunOnce = p.RunOnce != nil && *p.RunOnce
				sr.LicenseType = cmp.Or(p.LicenseType, store.LicenseAWS)
				if p.NumberOfRecentAmisToKeep != nil {
					sr.NumberOfRecentAmisToKeep = *p.NumberOfRecentAmisToKeep
				}
				sr.Encrypted, sr.KmsKeyID = p.Encrypted != nil && *p.Encrypted, p.KmsKeyID
			}
			if err := store.ValidateJob(store.ReplicationJob{ServerID: id, SeedReplicationTime: cmp.Or(sr.SeedTime, time.Now()),
				Frequency: sr.Frequency, RunOnce: sr.RunOnce, LicenseType: sr.LicenseType, NumberOfRecentAmisToKeep: sr.NumberOfRecentAmisToKeep,
				State: store.JobPending}); err != nil {
				return nil, appErr(err)
			}
			rc.Servers = append(rc.Servers, sr)
		}
	}
	if _, err := l.D.Store.UpdateApp(ctx, a.AppID, func(x *store.App) error { x.Replication = rc; return nil }); err != nil {
		return nil, appErr(err)
	}
	return &PutAppReplicationConfigurationOutput{}, nil
}

// GetAppReplicationConfiguration returns the servers' replication
// parameters, by group.
func (l *Local) GetAppReplicationConfiguration(ctx context.Context, in *GetAppReplicationConfigurationInput) (*GetAppReplicationConfigurationOutput, error) {
	a, err := l.getApp(ctx, in.AppID)
	if err != nil {
		return nil, err
	}
	out := &GetAppReplicationConfigurationOutput{ServerGroupReplicationConfigurations: []ServerGroupReplicationConfiguration{}}
	if a.Replication == nil {
		return out, nil
	}
	c, err := l.catalog(ctx)
	if err != nil {
		return nil, err
	}
	for _, g := range a.Groups {
		sg := ServerGroupReplicationConfiguration{ServerGroupID: g.GroupID, ServerReplicationConfigurations: []ServerReplicationConfiguration{}}
		for _, r := range a.Replication.Servers {
			if !slices.Contains(g.ServerIDs, r.ServerID) {
				continue
			}
			srv := c.server(c.servers[r.ServerID])
			seed := At(r.SeedTime)
			p := &ServerReplicationParameters{Frequency: &r.Frequency, RunOnce: &r.RunOnce, LicenseType: r.LicenseType,
				NumberOfRecentAmisToKeep: &r.NumberOfRecentAmisToKeep, Encrypted: &r.Encrypted, KmsKeyID: r.KmsKeyID}
			if !r.SeedTime.IsZero() {
				p.SeedTime = &seed
			}
			sg.ServerReplicationConfigurations = append(sg.ServerReplicationConfigurations, ServerReplicationConfiguration{Server: &srv, ServerReplicationParameters: p})
		}
		out.ServerGroupReplicationConfigurations = append(out.ServerGroupReplicationConfigurations, sg)
	}
	return out, nil
}

// DeleteAppReplicationConfiguration removes the replication configuration
// (the jobs stay; StopAppReplication deletes them).
func (l *Local) DeleteAppReplicationConfiguration(ctx context.Context, in *AppRef) (*Empty, error) {
	if _, err := l.getApp(ctx, in.AppID); err != nil {
		return nil, err
	}
	_, err := l.D.Store.UpdateApp(ctx, in.AppID, func(a *store.App) error { a.Replication = nil; return nil })
	return &Empty{}, appErr(err)
}

// liveJob is the server's job that is not deleted, if any.
// appJobs is an application with every replication job of the connector,
// for matching its servers to their jobs (liveJob).
func (l *Local) appJobs(ctx context.Context, id string) (store.App, []store.ReplicationJob, error) {
	a, err := l.getApp(ctx, id)
	if err != nil {
		return store.App{}, nil, err
	}
	jobs, err := l.D.Store.ListJobs(ctx, store.JobFilter{})
	if err != nil {
		return store.App{}, nil, internal(err)
	}
	return a, jobs, nil
}

// setReplicationStopped records whether the application's replication was
// stopped (StopAppReplication) or started again.
func (l *Local) setReplicationStopped(ctx context.Context, id string, stopped bool) (*Empty, error) {
	if _, err := l.D.Store.UpdateApp(ctx, id, func(x *store.App) error { x.ReplicationStopped = stopped; return nil }); err != nil {
		return nil, appErr(err)
	}
	return &Empty{}, nil
}

func liveJob(jobs []store.ReplicationJob, serverID string) *store.ReplicationJob {
	for i := range jobs {
		if jobs[i].ServerID == serverID && jobs[i].State != store.JobDeleted {
			return &jobs[i]
		}
	}
	return nil
}

// StartAppReplication creates a replication job, with its configured
// parameters, for each server of the application that has none.
func (l *Local) StartAppReplication(ctx context.Context, in *AppRef) (*Empty, error) {
	a, jobs, err := l.appJobs(ctx, in.AppID)
	if err != nil {
		return nil, err
	}
	if a.Replication == nil {
		return nil, Errorf(ErrOperationNotPermitted, "app %q has no replication configuration: put one first (PutAppReplicationConfiguration, 'rehost app configure-replication')", a.Name)
	}
	for _, r := range a.Replication.Servers {
		if liveJob(jobs, r.ServerID) != nil {
			continue
		}
		seed := At(cmp.Or(r.SeedTime, time.Now()))
		freq := r.Frequency
		if _, err := l.CreateReplicationJob(ctx, &CreateReplicationJobInput{ServerID: r.ServerID, SeedReplicationTime: &seed,
			Frequency: &freq, RunOnce: r.RunOnce, LicenseType: r.LicenseType, RoleName: a.RoleName,
			Description: "app " + a.Name, NumberOfRecentAmisToKeep: r.NumberOfRecentAmisToKeep, Encrypted: r.Encrypted, KmsKeyID: r.KmsKeyID}); err != nil {
			return nil, err
		}
	}
	return l.setReplicationStopped(ctx, a.AppID, false)
}

// StopAppReplication deletes the replication job of each server of the
// application (their AMIs stay), as SMS does.
func (l *Local) StopAppReplication(ctx context.Context, in *AppRef) (*Empty, error) {
	a, jobs, err := l.appJobs(ctx, in.AppID)
	if err != nil {
		return nil, err
	}
	for _, id := range a.Servers() {
		if j := liveJob(jobs, id); j != nil {
			if _, err := l.DeleteReplicationJob(ctx, &DeleteReplicationJobInput{ReplicationJobID: j.ReplicationJobID}); err != nil {
				return nil, err
			}
		}
	}
	return l.setReplicationStopped(ctx, a.AppID, true)
}

// StartOnDemandAppReplication starts a run of every server's job.
func (l *Local) StartOnDemandAppReplication(ctx context.Context, in *StartOnDemandAppReplicationInput) (*StartOnDemandAppReplicationOutput, error) {
	a, jobs, err := l.appJobs(ctx, in.AppID)
	if err != nil {
		return nil, err
	}
	var todo []*store.ReplicationJob
	for _, id := range a.Servers() {
		j := liveJob(jobs, id)
		if j == nil {
			return nil, Errorf(ErrOperationNotPermitted, "server %s of app %q has no replication job: StartAppReplication first", id, a.Name)
		}
		todo = append(todo, j)
	}
	out := &StartOnDemandAppReplicationOutput{}
	for _, j := range todo {
		r, err := l.StartOnDemandReplicationRun(ctx, &StartOnDemandReplicationRunInput{ReplicationJobID: j.ReplicationJobID, Description: in.Description})
		if err != nil {
			return out, err
		}
		out.RehostReplicationRunIDs = append(out.RehostReplicationRunIDs, r.ReplicationRunID)
	}
	return out, nil
}

func (l *Local) appCloud(ctx context.Context) (*awstarget.Target, error) {
	t, err := l.D.Target(ctx)
	if err != nil {
		return nil, Errorf(ErrOperationNotPermitted, "%v", err)
	}
	return t, nil
}

// formatOf reads SMS's OutputFormat, JSON by default.
func formatOf(f string) (format, ext, contentType string, err error) {
	switch strings.ToUpper(cmp.Or(f, app.FormatJSON)) {
	case app.FormatJSON:
		return app.FormatJSON, "json", "application/json", nil
	case app.FormatYAML:
		return app.FormatYAML, "yaml", "application/yaml", nil
	}
	return "", "", "", Errorf(ErrInvalidParameter, "format %q: want JSON or YAML", f)
}

// GenerateTemplate renders the application's CloudFormation template,
// checked against AWS, and stores it in the staging bucket.
func (l *Local) GenerateTemplate(ctx context.Context, in *GenerateTemplateInput) (*GenerateTemplateOutput, error) {
	if _, err := l.getApp(ctx, in.AppID); err != nil {
		return nil, err
	}
	format, ext, ctype, err := formatOf(in.TemplateFormat)
	if err != nil {
		return nil, err
	}
	t, err := l.appCloud(ctx)
	if err != nil {
		return nil, err
	}
	plan, err := app.Prepare(ctx, l.D.Store, t, in.AppID)
	if err != nil {
		return nil, appErr(err)
	}
	body, err := app.Template(plan.Input, format)
	if err != nil {
		return nil, appErr(err)
	}
	key := awstarget.TemplateKey(in.AppID, "template."+ext)
	bucket, err := t.PutObject(ctx, key, body, ctype)
	if err != nil {
		return nil, internal(err)
	}
	return &GenerateTemplateOutput{S3Location: &S3Location{Bucket: bucket, Key: key}, RehostTemplateBody: string(body)}, nil
}

// GenerateChangeSet asks CloudFormation what launching the application
// again would change in its cutover's stack, and stores the template of the
// change in the staging bucket.
func (l *Local) GenerateChangeSet(ctx context.Context, in *GenerateChangeSetInput) (*GenerateChangeSetOutput, error) {
	if _, err := l.getApp(ctx, in.AppID); err != nil {
		return nil, err
	}
	format, ext, ctype, err := formatOf(in.ChangesetFormat)
	if err != nil {
		return nil, err
	}
	t, err := l.appCloud(ctx)
	if err != nil {
		return nil, err
	}
	plan, cs, err := l.D.Apps.ChangeSet(ctx, in.AppID)
	if err != nil {
		return nil, appErr(err)
	}
	body, err := app.Template(plan.Input, format)
	if err != nil {
		return nil, appErr(err)
	}
	key := awstarget.TemplateKey(in.AppID, "changeset."+ext)
	bucket, err := t.PutObject(ctx, key, body, ctype)
	if err != nil {
		return nil, internal(err)
	}
	out := &GenerateChangeSetOutput{S3Location: &S3Location{Bucket: bucket, Key: key}, RehostChangeSetID: cs.ID,
		RehostChangeSetStatus: cs.Status, RehostChangeSetReason: cs.StatusReason, RehostChangeSetTemplate: string(body)}
	for _, c := range cs.Changes {
		out.RehostChanges = append(out.RehostChanges, StackChange{Action: c.Action, LogicalID: c.LogicalID, PhysicalID: c.PhysicalID,
			ResourceType: c.Type, Replacement: c.Replacement})
	}
	return out, nil
}

func kindOf(test bool) store.LaunchKind {
	if test {
		return store.LaunchTest
	}
	return store.LaunchCutover
}

// LaunchApp launches the application from its template (its cutover, or
// a test launch), or updates the launched stack with the newest AMIs.
func (l *Local) LaunchApp(ctx context.Context, in *LaunchAppInput) (*LaunchOutput, error) {
	if _, err := l.getApp(ctx, in.AppID); err != nil {
		return nil, err
	}
	ln, err := l.D.Apps.Launch(ctx, in.AppID, kindOf(in.RehostTest))
	if err != nil {
		return nil, appErr(err)
	}
	l.notify()
	out := launchOut(ln)
	return &LaunchOutput{RehostLaunch: &out}, nil
}

// TerminateApp deletes the stack of the application's cutover (or test
// launch) and its instances.
func (l *Local) TerminateApp(ctx context.Context, in *TerminateAppInput) (*LaunchOutput, error) {
	if _, err := l.getApp(ctx, in.AppID); err != nil {
		return nil, err
	}
	ln, err := l.D.Apps.Terminate(ctx, in.AppID, kindOf(in.RehostTest))
	if err != nil {
		return nil, appErr(err)
	}
	l.notify()
	out := launchOut(ln)
	return &LaunchOutput{RehostLaunch: &out}, nil
}

// ImportAppRightsizing fills the launch configuration from a rightsizing
// CSV: every row is checked (instance types against the region when the
// connector is registered) before anything changes.
func (l *Local) ImportAppRightsizing(ctx context.Context, in *ImportAppRightsizingInput) (*ImportAppRightsizingOutput, error) {
	a, err := l.getApp(ctx, in.AppID)
	if err != nil {
		return nil, err
	}
	rows, err := app.ParseRightsizing(strings.NewReader(in.CSV))
	if err != nil {
		return nil, appErr(err)
	}
	servers, err := l.appServers(ctx, a)
	if err != nil {
		return nil, err
	}
	var unknown func(context.Context, []string) ([]string, error)
	if t, err := l.D.Target(ctx); err == nil {
		unknown = t.UnknownInstanceTypes
	}
	lc, report, err := app.Rightsize(ctx, a, servers, rows, unknown)
	if err != nil {
		return nil, appErr(err)
	}
	if _, err := l.D.Store.UpdateApp(ctx, a.AppID, func(x *store.App) error {
		if !slices.Equal(x.Servers(), a.Servers()) {
			return fmt.Errorf("%w: the app's servers changed meanwhile: import the CSV again", store.ErrConflict)
		}
		x.Launch = lc
		return nil
	}); err != nil {
		return nil, appErr(err)
	}
	out := &ImportAppRightsizingOutput{Servers: []RightsizedServer{}}
	for _, s := range report {
		out.Servers = append(out.Servers, RightsizedServer{ServerID: s.ServerID, Name: s.Name, InstanceType: s.InstanceType, Suggested: s.Suggested, Row: s.Row})
	}
	return out, nil
}
