package api

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"

	"github.com/rehost/rehost/connector/daemon"
	"github.com/rehost/rehost/connector/fleet"
	"github.com/rehost/rehost/connector/secret"
	"github.com/rehost/rehost/pkg/store"
)

// GetFleetStatusInput has no members.
type GetFleetStatusInput struct{}

// FleetStatus is the fleet's view: its members, which one schedules, and
// the leases of the runs.
type FleetStatus struct {
	Leader          string        `json:"leader,omitempty"`
	LeaseTTLSeconds float64       `json:"leaseTtlSeconds"`
	Members         []FleetMember `json:"members"`
	Leases          []FleetLease  `json:"leases"`
}

// FleetMember is one connector of the fleet.
type FleetMember struct {
	ConnectorID string `json:"connectorId"`
	// Status is HEALTHY while its heartbeat is younger than the lease TTL.
	Status        string   `json:"status"`
	Version       string   `json:"version,omitempty"`
	IPAddress     string   `json:"ipAddress,omitempty"`
	Sources       []string `json:"sources"` // names
	Capacity      int      `json:"capacity"`
	RunsInFlight  int      `json:"runsInFlight"`
	Leader        bool     `json:"leader,omitempty"`
	JoinedOn      Time     `json:"joinedOn,omitzero"`
	LastHeartbeat Time     `json:"lastHeartbeat,omitzero"`
}

// FleetLease is a run's lease: who holds it, with which fencing token,
// until when.
type FleetLease struct {
	ReplicationRunID string `json:"replicationRunId"`
	ReplicationJobID string `json:"replicationJobId,omitempty"`
	ConnectorID      string `json:"connectorId"`
	Token            int64  `json:"token"`
	Acquired         Time   `json:"acquired,omitzero"`
	Expires          Time   `json:"expires,omitzero"`
	Expired          bool   `json:"expired,omitempty"`
	State            string `json:"state,omitempty"`
	Stage            string `json:"stage,omitempty"`
}

// ShareFleetKeyInput is a joining connector's one-time public key.
type ShareFleetKeyInput struct {
	PublicKey []byte `json:"publicKey"`
}

// ShareFleetKeyOutput is the fleet's key sealed for the joining connector
// (see connector/secret's key share), and where the fleet's store is.
type ShareFleetKeyOutput struct {
	PublicKey []byte `json:"publicKey"`
	SealedKey []byte `json:"sealedKey"`
	// Store is the store's URL (never with a password); StoreCAPEM the CA
	// its certificate is checked against, when the member has one.
	Store      string `json:"store"`
	StoreCAPEM []byte `json:"storeCaPem,omitempty"`
}

func notFleet() error {
	return Errorf(ErrOperationNotPermitted, "%s", daemon.ErrNotFleet.Error())
}

// GetFleetStatus reports the fleet's members, leader and leases.
func (l *Local) GetFleetStatus(ctx context.Context, _ *GetFleetStatusInput) (*FleetStatus, error) {
	st, err := l.D.FleetStatus(ctx)
	if errors.Is(err, daemon.ErrNotFleet) {
		return nil, notFleet()
	}
	if err != nil {
		return nil, internal(err)
	}
	names := l.sourceNames(ctx)
	out := &FleetStatus{Leader: st.Leader, LeaseTTLSeconds: st.TTL.Seconds(), Members: []FleetMember{}, Leases: []FleetLease{}}
	for _, m := range st.Members {
		out.Members = append(out.Members, fleetMember(m, names))
	}
	for _, ls := range st.Leases {
		out.Leases = append(out.Leases, FleetLease{ReplicationRunID: ls.RunID, ReplicationJobID: ls.JobID, ConnectorID: ls.Holder,
			Token: ls.Token, Acquired: At(ls.Acquired), Expires: At(ls.Expires), Expired: ls.Expired, State: string(ls.State), Stage: ls.Stage})
	}
	return out, nil
}

func fleetMember(m fleet.MemberStatus, names map[string]string) FleetMember {
	fm := FleetMember{ConnectorID: m.ID, Status: ConnectorUnhealthy, Version: m.Version, IPAddress: m.Address, Sources: []string{},
		Capacity: m.Capacity, RunsInFlight: m.RunsInFlight, Leader: m.Leader, JoinedOn: At(m.JoinedAt), LastHeartbeat: At(m.Heartbeat)}
	if m.Healthy {
		fm.Status = ConnectorHealthy
	}
	for _, id := range m.Sources {
		fm.Sources = append(fm.Sources, cmpName(names[id], id))
	}
	return fm
}

func cmpName(name, id string) string {
	if name == "" {
		return id
	}
	return name
}

// sourceNames maps source ids to names.
func (l *Local) sourceNames(ctx context.Context) map[string]string {
	names := map[string]string{}
	if srcs, err := l.D.Store.ListSources(ctx); err == nil {
		for _, s := range srcs {
			names[s.ID] = s.Name
		}
	}
	return names
}

// fleetConnectors is GetConnectors in a fleet: one connector per member,
// with SMS's status from its heartbeat, its version and IP, and the
// sources it serves (the first as its VM manager).
func (l *Local) fleetConnectors(ctx context.Context) ([]Connector, error) {
	st, err := l.D.FleetStatus(ctx)
	if err != nil {
		return nil, internal(err)
	}
	srcs, err := l.D.Store.ListSources(ctx)
	if err != nil {
		return nil, internal(err)
	}
	byID := map[string]store.Source{}
	for _, s := range srcs {
		byID[s.ID] = s
	}
	_, mac := daemon.HostAddress()
	var all []Connector
	for _, m := range st.Members {
		c := Connector{ConnectorID: m.ID, Version: m.Version, Status: ConnectorUnhealthy, IPAddress: m.Address,
			AssociatedOn: At(m.JoinedAt), SourceList: []string{}}
		if m.Healthy {
			c.Status = ConnectorHealthy
		}
		if l.D.Member != nil && m.ID == l.D.Member.ID() {
			c.MacAddress = mac
		}
		for _, id := range m.Sources {
			s, ok := byID[id]
			if !ok {
				continue
			}
			c.SourceList = append(c.SourceList, s.Name)
			if typ := vmManagerType(s.Kind); !slices.Contains(c.CapabilityList, typ) {
				c.CapabilityList = append(c.CapabilityList, typ)
			}
			if c.VmManagerID == "" {
				c.VmManagerName, c.VmManagerType, c.VmManagerID = s.Name, vmManagerType(s.Kind), s.ID
			}
		}
		all = append(all, c)
	}
	return all, nil
}

// ShareFleetKey seals this connector's secret key for a connector joining
// the fleet (rehost fleet join), which sent the public half of a one-time
// key pair: only it can open the answer.
func (l *Local) ShareFleetKey(ctx context.Context, in *ShareFleetKeyInput) (*ShareFleetKeyOutput, error) {
	if !l.D.StoreConfig.Postgres() {
		return nil, notFleet()
	}
	if len(in.PublicKey) == 0 {
		return nil, Errorf(ErrMissingRequiredParameter, "publicKey is required")
	}
	pub, sealed, err := secret.SealFor(filepath.Join(l.D.Dir, "master.key"), in.PublicKey)
	if err != nil {
		return nil, Errorf(ErrInvalidParameter, "%v", err)
	}
	out := &ShareFleetKeyOutput{PublicKey: pub, SealedKey: sealed, Store: l.D.StoreConfig.URL}
	if ca := l.D.StoreConfig.CAFile; ca != "" {
		if out.StoreCAPEM, err = os.ReadFile(ca); err != nil {
			return nil, internal(err)
		}
	}
	l.D.Log.Info("shared the fleet's key with a joining connector")
	return out, nil
}
