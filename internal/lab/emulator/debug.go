package emulator

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
)

// StateView is the JSON document GET /_emulator/state answers: what the
// emulated account holds, for leak checks and the demo.
type StateView struct {
	Region      string       `json:"region"`
	AccountID   string       `json:"accountId"`
	Images      []Image      `json:"images"`
	Snapshots   []Snapshot   `json:"snapshots"`
	ImportTasks []ImportTask `json:"importTasks"`
	Roles       []RoleView   `json:"roles"`
	// Instances are every instance, terminated ones too.
	Instances []Instance `json:"instances"`
	// Stacks are every stack, deleted ones too, without their events.
	Stacks []StackView `json:"stacks"`
}

// StackView is a stack's name, status and tags.
type StackView struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Tags   []Tag  `json:"tags,omitempty"`
}

// RoleView is a role without its documents' bodies.
type RoleView struct {
	Name     string   `json:"name"`
	Policies []string `json:"policies"`
}

// SnapshotHash is the JSON document of GET /_emulator/snapshots/{id}/sha256.
type SnapshotHash struct {
	SnapshotID string `json:"snapshotId"`
	SHA256     string `json:"sha256"`
	Size       int64  `json:"size"` // bytes hashed: the source disk's virtual size
}

// State returns the view the debug endpoint serves.
func (e *Emulator) State() StateView {
	v := StateView{Region: e.cfg.Region, AccountID: e.cfg.AccountID,
		Images: e.Images(), Snapshots: e.Snapshots(), ImportTasks: e.ImportTasks(), Roles: []RoleView{},
		Instances: e.Instances(), Stacks: []StackView{}}
	for _, st := range e.Stacks() {
		v.Stacks = append(v.Stacks, StackView{ID: st.ID, Name: st.Name, Status: st.Status, Tags: st.Tags})
	}
	if v.Instances == nil {
		v.Instances = []Instance{}
	}
	for _, r := range e.Roles() {
		rv := RoleView{Name: r.Name, Policies: []string{}}
		for p := range r.Policies {
			rv.Policies = append(rv.Policies, p)
		}
		v.Roles = append(v.Roles, rv)
	}
	if v.Images == nil {
		v.Images = []Image{}
	}
	if v.Snapshots == nil {
		v.Snapshots = []Snapshot{}
	}
	if v.ImportTasks == nil {
		v.ImportTasks = []ImportTask{}
	}
	return v
}

// serveDebug answers the read-only, unauthenticated test endpoints:
//
//	GET /_emulator/state                  StateView
//	GET /_emulator/snapshots/{id}/sha256  SnapshotHash
func (e *Emulator) serveDebug(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "the emulator's debug endpoints are read-only", http.StatusMethodNotAllowed)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 2 && parts[1] == "state":
		writeJSON(w, http.StatusOK, e.State())
	case len(parts) == 4 && parts[1] == "snapshots" && parts[3] == "sha256":
		sum, size, err := e.SnapshotSHA256(parts[2])
		if errors.Is(err, ErrNotFound) {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, http.StatusOK, SnapshotHash{SnapshotID: parts[2], SHA256: sum, Size: size})
	default:
		http.Error(w, "unknown debug endpoint", http.StatusNotFound)
	}
}

// FetchState reads the debug endpoint of an emulator running in another
// process (baseURL as Start returned it).
func FetchState(client *http.Client, baseURL string) (StateView, error) {
	var v StateView
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Get(strings.TrimSuffix(baseURL, "/") + "/_emulator/state")
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return v, errors.New("emulator state: " + resp.Status)
	}
	err = json.NewDecoder(resp.Body).Decode(&v)
	return v, err
}
