package hyperv

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/rehost/rehost/pkg/source"
)

// scriptControl drives Hyper-V hosts or an SCVMM server with the scripts.
//
// For Hyper-V, every VM runs on one node; a failover cluster's VMs move
// between nodes. Each operation on a VM goes to the node it was last seen
// on, and when that node no longer has it (it moved), the nodes are asked
// again and the operation follows it. SCVMM knows where each VM runs: all
// operations go to the SCVMM server.
type scriptControl struct {
	vmm   bool
	nodes []namedNode // the endpoint first, then the cluster's other nodes

	mu    sync.Mutex
	owner map[string]int // vm id → index in nodes where last seen
}

type namedNode struct {
	name string // "" for the endpoint
	w    *wsman
}

func newScriptControl(cfg Config) (*scriptControl, error) {
	addr, err := endpointAddr(cfg.Endpoint)
	if err != nil {
		return nil, err
	}
	w, err := newWSMan(cfg, addr, cfg.Thumbprint)
	if err != nil {
		return nil, err
	}
	c := &scriptControl{vmm: cfg.Manager == ManagerSCVMM, nodes: []namedNode{{w: w}}, owner: map[string]int{}}
	if c.vmm {
		return c, nil
	}
	_, port, _ := net.SplitHostPort(addr)
	names := make([]string, 0, len(cfg.Nodes))
	for n := range cfg.Nodes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		n := cfg.Nodes[name]
		if n.Address == "" {
			continue // settings of a node, not a cluster member to ask
		}
		a := n.Address
		if _, _, err := net.SplitHostPort(a); err != nil {
			a = net.JoinHostPort(a, port)
		}
		if strings.EqualFold(a, addr) || (net.ParseIP(shortName(a)) == nil && strings.EqualFold(shortName(a), shortName(addr))) {
			continue // the endpoint itself, listed by its node name
		}
		nw, err := newWSMan(cfg, a, n.Thumbprint)
		if err != nil {
			return nil, fmt.Errorf("cluster node %s: %w", name, err)
		}
		c.nodes = append(c.nodes, namedNode{name: name, w: nw})
	}
	return c, nil
}

// close drops the connections kept alive (and their NTLM sessions).
func (c *scriptControl) close() error {
	for _, n := range c.nodes {
		n.w.client.CloseIdleConnections()
	}
	return nil
}

func (c *scriptControl) script(hv string) string {
	if c.vmm {
		return "vmm-" + strings.TrimPrefix(hv, "hv-")
	}
	return hv
}

type vmArgs struct {
	VMID   string `json:"vmId,omitempty"`
	Name   string `json:"name,omitempty"`
	ID     string `json:"id,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	// hv-changes: the disk, the RCT id changes are asked since, where the
	// page starts and how many areas it may hold.
	Disk   string `json:"disk,omitempty"`
	Since  string `json:"since,omitempty"`
	Offset int64  `json:"offset,omitempty"`
	Limit  int    `json:"limit,omitempty"`
}

func (c *scriptControl) inventory(ctx context.Context, vmID string) ([]hostVM, error) {
	if c.vmm {
		var vms list[vmmVM]
		if err := c.nodes[0].w.run(ctx, scriptVMMInventory, vmArgs{VMID: vmID}, &vms); err != nil {
			return nil, err
		}
		out := make([]hostVM, 0, len(vms))
		for _, v := range vms {
			out = append(out, v.host())
		}
		return out, nil
	}
	var out []hostVM
	seen := map[string]bool{}
	order := make([]int, 0, len(c.nodes))
	c.mu.Lock()
	if i, ok := c.owner[strings.ToLower(vmID)]; ok && vmID != "" {
		order = append(order, i) // where it was last seen first
	}
	c.mu.Unlock()
	for i := range c.nodes {
		if len(order) == 0 || order[0] != i {
			order = append(order, i)
		}
	}
	for _, i := range order {
		n := c.nodes[i]
		if vmID != "" && len(out) > 0 {
			break // found
		}
		var vms list[psVM]
		err := n.w.run(ctx, scriptHVInventory, vmArgs{VMID: vmID}, &vms)
		if errors.Is(err, source.ErrNotFound) && vmID != "" {
			continue // on another node, or nowhere
		}
		if err != nil {
			if n.name != "" {
				return nil, fmt.Errorf("cluster node %s: %w", n.name, err)
			}
			return nil, err
		}
		for _, v := range vms {
			h := v.host()
			if seen[h.ID] {
				continue
			}
			seen[h.ID] = true
			c.mu.Lock()
			c.owner[h.ID] = i
			c.mu.Unlock()
			out = append(out, h)
		}
	}
	if vmID != "" && len(out) == 0 {
		return nil, fmt.Errorf("no node knows vm %s: %w", vmID, source.ErrNotFound)
	}
	return out, nil
}

// digests lists every VM's id (lower-case, as inventory has it) with a
// fingerprint of its hv-digest entry, one light script run per node;
// SCVMM has no light listing (errors.ErrUnsupported).
func (c *scriptControl) digests(ctx context.Context) (map[string]string, error) {
	if c.vmm {
		return nil, fmt.Errorf("list vm fingerprints through scvmm: %w", errors.ErrUnsupported)
	}
	out := map[string]string{}
	for _, n := range c.nodes {
		var vms list[json.RawMessage]
		if err := n.w.run(ctx, scriptHVDigest, vmArgs{}, &vms); err != nil {
			if n.name != "" {
				return nil, fmt.Errorf("cluster node %s: %w", n.name, err)
			}
			return nil, err
		}
		for _, raw := range vms {
			var v struct {
				ID text `json:"Id"`
			}
			if err := json.Unmarshal(raw, &v); err != nil || v.ID == "" {
				return nil, fmt.Errorf("the digest script answered an entry without a vm id: %.80s", raw)
			}
			id := strings.ToLower(string(v.ID))
			if _, seen := out[id]; !seen {
				sum := sha256.Sum256(raw)
				out[id] = hex.EncodeToString(sum[:16])
			}
		}
	}
	return out, nil
}

// onVM runs fn on the node that has the VM, following it when it moved.
func (c *scriptControl) onVM(ctx context.Context, vmID string, fn func(w *wsman) error) error {
	if len(c.nodes) == 1 {
		return fn(c.nodes[0].w)
	}
	c.mu.Lock()
	i, known := c.owner[strings.ToLower(vmID)]
	c.mu.Unlock()
	if known {
		err := fn(c.nodes[i].w)
		if !errors.Is(err, errNotHere) && !errors.Is(err, source.ErrNotFound) {
			return err
		}
	}
	if _, err := c.inventory(ctx, vmID); err != nil {
		return err
	}
	c.mu.Lock()
	i = c.owner[strings.ToLower(vmID)]
	c.mu.Unlock()
	return fn(c.nodes[i].w)
}

// errNotHere: the node does not run the VM (a removal found nothing).
var errNotHere = errors.New("not on this node")

func (c *scriptControl) checkpoint(ctx context.Context, vmID, name string) (psSnapshot, error) {
	var snaps list[psSnapshot]
	err := c.onVM(ctx, vmID, func(w *wsman) error {
		return w.run(ctx, c.script(scriptHVCheckpoint), vmArgs{VMID: vmID, Name: name}, &snaps)
	})
	if err != nil {
		return psSnapshot{}, err
	}
	if len(snaps) != 1 || snaps[0].ID == "" {
		return psSnapshot{}, fmt.Errorf("the checkpoint script answered %d checkpoints", len(snaps))
	}
	return snaps[0], nil
}

func (c *scriptControl) rctCheckpoint(ctx context.Context, vmID, name string) (psSnapshot, error) {
	var snaps list[psSnapshot]
	err := c.onVM(ctx, vmID, func(w *wsman) error {
		return w.run(ctx, scriptHVRCTCheckpoint, vmArgs{VMID: vmID, Name: name}, &snaps)
	})
	if err != nil {
		return psSnapshot{}, err
	}
	if len(snaps) != 1 || snaps[0].ID == "" {
		return psSnapshot{}, fmt.Errorf("the recovery checkpoint script answered %d checkpoints", len(snaps))
	}
	return snaps[0], nil
}

func (c *scriptControl) changes(ctx context.Context, vmID, id, disk, since string, offset int64, limit int) (rctPage, error) {
	var res list[rctPage]
	err := c.onVM(ctx, vmID, func(w *wsman) error {
		return w.run(ctx, scriptHVChanges, vmArgs{VMID: vmID, ID: id, Disk: disk, Since: since, Offset: offset, Limit: limit}, &res)
	})
	if err != nil {
		return rctPage{}, err
	}
	if len(res) != 1 {
		return rctPage{}, fmt.Errorf("the changes script answered %d pages", len(res))
	}
	return res[0], nil
}

func (c *scriptControl) keep(ctx context.Context, vmID, id, name string) (refPoint, error) {
	var res list[refPoint]
	err := c.onVM(ctx, vmID, func(w *wsman) error {
		return w.run(ctx, scriptHVKeep, vmArgs{VMID: vmID, ID: id, Name: name}, &res)
	})
	if err != nil {
		return refPoint{}, err
	}
	if len(res) != 1 || res[0].ID == "" {
		return refPoint{}, fmt.Errorf("the keep script answered %d reference points", len(res))
	}
	return res[0], nil
}

func (c *scriptControl) forget(ctx context.Context, vmID, id, name string) error {
	err := c.onVM(ctx, vmID, func(w *wsman) error {
		var res list[struct {
			Removed number `json:"Removed"`
		}]
		if err := w.run(ctx, scriptHVForget, vmArgs{VMID: vmID, ID: id, Name: name}, &res); err != nil {
			return err
		}
		if len(res) == 0 {
			return errNotHere
		}
		return nil
	})
	if errors.Is(err, errNotHere) || errors.Is(err, source.ErrNotFound) {
		return nil
	}
	return err
}

func (c *scriptControl) checkpoints(ctx context.Context, vmID, prefix string) ([]psSnapshot, error) {
	var snaps list[psSnapshot]
	err := c.onVM(ctx, vmID, func(w *wsman) error {
		return w.run(ctx, c.script(scriptHVCheckpoints), vmArgs{VMID: vmID, Prefix: prefix}, &snaps)
	})
	return snaps, err
}

func (c *scriptControl) remove(ctx context.Context, vmID, id, name string) error {
	err := c.onVM(ctx, vmID, func(w *wsman) error {
		var res list[struct {
			Removed number `json:"Removed"`
		}]
		if err := w.run(ctx, c.script(scriptHVRemove), vmArgs{VMID: vmID, ID: id, Name: name}, &res); err != nil {
			return err
		}
		if len(res) == 0 {
			return errNotHere
		}
		return nil
	})
	if errors.Is(err, errNotHere) || errors.Is(err, source.ErrNotFound) {
		return nil // the VM is gone, and its checkpoints with it
	}
	return err
}

func (c *scriptControl) export(ctx context.Context, vmID, id string) (hostExport, error) {
	var res list[psExport]
	err := c.onVM(ctx, vmID, func(w *wsman) error {
		return w.run(ctx, c.script(scriptHVExport), vmArgs{VMID: vmID, ID: id}, &res)
	})
	if err != nil {
		return hostExport{}, err
	}
	if len(res) != 1 {
		return hostExport{}, fmt.Errorf("the export script answered %d results", len(res))
	}
	r := res[0]
	e := hostExport{Host: string(cmp.Or(string(r.ComputerName), string(r.VMHost))), Status: cmp.Or(string(r.Status), string(r.StatusString))}
	for _, d := range r.HardDrives {
		e.Disks = append(e.Disks, d.disk())
	}
	for _, d := range r.VirtualDiskDrives {
		e.Disks = append(e.Disks, d.disk())
	}
	return e, nil
}

// smbAddress says where node's SMB server listens: an override of Nodes,
// else the endpoint's host for a standalone host's own files, else the
// node's name; SMBPort unless the address names a port.
func smbAddress(cfg Config, endpointHost, node, vmNode string) string {
	a := ""
	for name, n := range cfg.Nodes {
		if strings.EqualFold(name, node) && n.SMBAddress != "" {
			a = n.SMBAddress
		}
	}
	if a == "" {
		a = node
		if !cfg.clustered() && cfg.Manager != ManagerSCVMM && strings.EqualFold(node, vmNode) {
			a = endpointHost
		}
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		a = net.JoinHostPort(strings.Trim(a, "[]"), strconv.Itoa(cfg.SMBPort))
	}
	return a
}

// shortName is the host part of a name or address before any domain:
// "hv01" of "HV01.corp.example:5986".
func shortName(a string) string {
	if h, _, err := net.SplitHostPort(a); err == nil {
		a = h
	}
	if net.ParseIP(a) != nil {
		return a
	}
	n, _, _ := strings.Cut(a, ".")
	return n
}
