package hypervsim

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rehost/rehost/internal/lab/diskwrite"
)

// Options configure Start.
type Options struct {
	// Dir is where the hosts' VM files live: the directory Samba serves,
	// standing for Root on the hosts. Required.
	Dir string
	// Root is the Windows path Dir stands for (default C:\Hyper-V).
	Root string
	// Nodes are the hosts, each with its own WinRM listener (default one,
	// HV-LAB01); more make a failover cluster.
	Nodes []string
	// User, Domain and Password of the account WinRM accepts (default
	// LAB\rehost, a generated password): a host's domain account, which
	// the Samba of the tests also accepts.
	User, Domain, Password string
	// AllowBasic accepts Basic authentication (off by default, as on
	// Windows).
	AllowBasic bool
	// OperationTimeout is how long a Receive waits for output before the
	// TimedOut fault (default 5 s; WinRM's is the client's, 60 s).
	OperationTimeout time.Duration
	// Delay slows every script down (to kill a connector mid-operation);
	// SetDelay changes it.
	Delay time.Duration
}

// Sim is a running simulated Hyper-V installation.
type Sim struct {
	*Host
	opts     Options
	user     string
	domain   string
	password string
	servers  map[string]*server
	delay    atomic.Int64
	delayed  atomic.Value // script name the delay applies to; "" for all

	mu         sync.Mutex
	violations []string
	auth       []string
	counts     map[string]int
}

// Start starts a WinRM listener per node.
func Start(o Options) (_ *Sim, err error) {
	if o.Dir == "" {
		return nil, errors.New("hypervsim: no directory")
	}
	if o.Root == "" {
		o.Root = `C:\Hyper-V`
	}
	if len(o.Nodes) == 0 {
		o.Nodes = []string{"HV-LAB01"}
	}
	if o.User == "" {
		o.User = "rehost"
	}
	if o.Domain == "" {
		o.Domain = "LAB"
	}
	if o.OperationTimeout == 0 {
		o.OperationTimeout = 5 * time.Second
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	if o.Password == "" {
		var pw [12]byte
		rand.Read(pw[:])
		o.Password = "Hv-" + hex.EncodeToString(pw[:])
	}
	s := &Sim{Host: newHost(o.Root, o.Dir, o.Nodes), opts: o, user: o.User, domain: o.Domain,
		password: o.Password, servers: map[string]*server{}, counts: map[string]int{}}
	s.SetDelay("", o.Delay)
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, n := range o.Nodes {
		srv, err := newServer(s, n)
		if err != nil {
			return nil, err
		}
		s.servers[strings.ToUpper(n)] = srv
	}
	return s, nil
}

// Close stops the listeners.
func (s *Sim) Close() {
	for _, srv := range s.servers {
		srv.ts.Close()
	}
}

func (s *Sim) node(n string) *server {
	if n == "" {
		n = s.opts.Nodes[0]
	}
	return s.servers[strings.ToUpper(n)]
}

// Addr is host:port of node's WinRM listener ("" for the first node).
func (s *Sim) Addr(node string) string { return strings.TrimPrefix(s.node(node).ts.URL, "https://") }

// Thumbprint is the SHA-256 thumbprint of node's certificate.
func (s *Sim) Thumbprint(node string) string { return s.node(node).thumbprint() }

// CertificatePEM is node's certificate.
func (s *Sim) CertificatePEM(node string) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.node(node).cert})
}

// User is the account as a client gives it (DOMAIN\user); Password its
// password.
func (s *Sim) User() string     { return s.domain + `\` + s.user }
func (s *Sim) Password() string { return s.password }

// Nodes names the hosts.
func (s *Sim) Nodes() []string { return append([]string(nil), s.opts.Nodes...) }

// OpenShells counts WinRM shells created and not deleted, on every node.
func (s *Sim) OpenShells() int {
	n := 0
	for _, srv := range s.servers {
		n += srv.openShells()
	}
	return n
}

func (s *Sim) violation(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations = append(s.violations, fmt.Sprintf(format, args...))
}

// Violations lists what the server saw that a rehost client must not send:
// a command that is not one of rehost's scripts, an argument spliced into
// code, a command line too long for cmd.exe, an unknown action.
func (s *Sim) Violations() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.violations...)
}

func (s *Sim) authEvent(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = append(s.auth, e)
}

// AuthEvents lists the authentication outcomes ("ntlm ok", "basic
// refused: not allowed", …), in order.
func (s *Sim) AuthEvents() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auth...)
}

func (s *Sim) count(k string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[k]++
}

// SetDelay makes script (every script when "") take d before it acts.
func (s *Sim) SetDelay(script string, d time.Duration) {
	s.delayed.Store(script)
	s.delay.Store(int64(d))
}

// Counts counts WS-Management operations ("wsman:Create", …) and scripts
// received ("script:hv-checkpoint", counted before any delay).
func (s *Sim) Counts() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for k, v := range s.counts {
		out[k] = v
	}
	return out
}

// writePath takes diskwrite requests on every node's listener, with the
// account WinRM accepts.
const writePath = "/_hyperv/write"

// WriteURL is where blocks are written into a VM's disk on request
// (internal/lab/diskwrite), with User and Password.
func (s *Sim) WriteURL() string { return s.node("").ts.URL + writePath }

func (s *Sim) writable(vm string, i int) (diskwrite.Disk, error) {
	n, err := s.DiskSize(vm, i)
	if err != nil {
		return diskwrite.Disk{}, fmt.Errorf("%v: %w", err, diskwrite.ErrNoDisk)
	}
	return diskwrite.Disk{Capacity: n, Write: func(off int64, p []byte) error { return s.WriteDisk(vm, i, off, p) }}, nil
}
