package vspheresim

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/rehost/rehost/internal/lab/diskwrite"
)

// statePath serves State: an unauthenticated, read-only, test-only view
// (like the AWS emulator's /_emulator/state) for a crash campaign that
// counts what a killed connector left open.
const statePath = "/_vcenter/state"

// State is what the simulated vCenter holds that a client must clean up.
type State struct {
	// OpenLeases are the NFC export leases neither completed, aborted nor
	// expired.
	OpenLeases []LeaseState `json:"openLeases"`
	// Snapshots are the snapshot names of every VM that has any.
	Snapshots map[string][]string `json:"snapshots"`
	// Completed, Aborted and Expired count leases since the start.
	Completed    int           `json:"completedLeases"`
	Aborted      int           `json:"abortedLeases"`
	Expired      int           `json:"expiredLeases"`
	LeaseTimeout time.Duration `json:"leaseTimeout"`
}

// LeaseState is one open lease.
type LeaseState struct {
	ID       string    `json:"id"`
	VM       string    `json:"vm"`
	Progress int       `json:"progress"`
	Renewed  time.Time `json:"renewed"` // created, or its last progress call
}

// State lists the open leases and the snapshots.
func (s *Sim) State() (State, error) {
	st := State{OpenLeases: []LeaseState{}, Snapshots: map[string][]string{}, LeaseTimeout: s.opts.LeaseTimeout}
	s.mu.Lock()
	for id, l := range s.leases {
		l.mu.Lock()
		st.OpenLeases = append(st.OpenLeases, LeaseState{ID: id, VM: l.vm, Progress: l.progress, Renewed: l.renewed})
		l.mu.Unlock()
	}
	st.Completed, st.Aborted, st.Expired = s.completed, s.aborted, s.expired
	var vms []string
	for name := range s.vms {
		vms = append(vms, name)
	}
	s.mu.Unlock()
	slices.SortFunc(st.OpenLeases, func(a, b LeaseState) int { return strings.Compare(a.ID, b.ID) })
	for _, vm := range vms {
		names, err := s.Snapshots(vm)
		if err != nil {
			return st, err
		}
		if len(names) > 0 {
			st.Snapshots[vm] = names
		}
	}
	return st, nil
}

// writePath takes diskwrite requests, with the simulator's credentials.
const writePath = "/_vcenter/write"

// WriteURL is where blocks are written into a VM's disk on request
// (internal/lab/diskwrite), with the simulator's user and password.
func (s *Sim) WriteURL() string {
	u := *s.server.URL
	u.User, u.Path = nil, writePath
	return u.String()
}

func (s *Sim) writable(vm string, i int) (diskwrite.Disk, error) {
	n, err := s.DiskCapacity(vm, i)
	if err != nil {
		return diskwrite.Disk{}, fmt.Errorf("%v: %w", err, diskwrite.ErrNoDisk)
	}
	return diskwrite.Disk{Capacity: n, Write: func(off int64, p []byte) error { return s.WriteDisk(vm, i, off, p) }}, nil
}

// StateURL is where State is served.
func (s *Sim) StateURL() string {
	u := *s.server.URL
	u.User, u.Path = nil, statePath
	return u.String()
}

func (s *Sim) serveState(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "the state endpoint is read-only", http.StatusMethodNotAllowed)
		return
	}
	st, err := s.State()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(st)
}

// FetchState reads the state of a simulated vCenter in another process.
// sdkURL is its URL (…/sdk); thumbprint, when given, pins its certificate
// (SHA-256, colon-separated hex, as Thumbprint prints it); without one the
// certificate is not checked, which suits a loopback lab only.
func FetchState(ctx context.Context, sdkURL, thumbprint string) (State, error) {
	var st State
	base := strings.TrimSuffix(strings.TrimSuffix(sdkURL, "/"), "/sdk")
	cfg := &tls.Config{InsecureSkipVerify: true}
	if thumbprint != "" {
		want := strings.ToUpper(strings.ReplaceAll(thumbprint, ":", ""))
		cfg.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
			if len(raw) == 0 {
				return errors.New("no certificate")
			}
			sum := sha256.Sum256(raw[0])
			if got := fmt.Sprintf("%X", sum[:]); got != want {
				return fmt.Errorf("vcenter certificate thumbprint %s, want %s", colonHex(sum[:]), thumbprint)
			}
			return nil
		}
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+statePath, nil)
	if err != nil {
		return st, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return st, fmt.Errorf("vcenter state: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("vcenter state: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
