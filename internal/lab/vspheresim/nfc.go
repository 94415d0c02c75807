package vspheresim

import (
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"

	"github.com/rehost/rehost/pkg/disk"
)

// nfcPath is where lease device URLs point; the simulator's own /nfc/
// serves files as they are on its datastore, which is not what an export
// of a snapshot must yield.
const nfcPath = "/rehost-nfc/"

// lease is an export lease: ready at once, serving each disk of a frozen
// view until it is completed or aborted.
type lease struct {
	mo.HttpNfcLease

	sim *Sim
	vm  string

	mu       sync.Mutex
	open     bool
	disks    map[string]*leaseDisk // by the last element of the device URL
	progress int
	renewed  time.Time // creation or last progress call
	manifest map[string]types.HttpNfcLeaseManifestEntry
}

type leaseDisk struct {
	index int
	key   string
	view  *sparseView
}

func (s *Sim) newLease(ctx *simulator.Context, st *vmState, entity types.ManagedObjectReference,
	devices object.VirtualDeviceList, views []*sparseView) *lease {
	s.mu.Lock()
	s.seq++
	id := fmt.Sprintf("rehost-lease-%d", s.seq)
	s.mu.Unlock()

	l := &lease{
		HttpNfcLease: mo.HttpNfcLease{
			InitializeProgress: 100,
			Mode:               string(types.HttpNfcLeaseModePull),
			Capabilities:       types.HttpNfcLeaseCapabilities{PullModeSupported: true},
			State:              types.HttpNfcLeaseStateReady,
		},
		sim:      s,
		vm:       st.name,
		open:     true,
		renewed:  time.Now(),
		disks:    map[string]*leaseDisk{},
		manifest: map[string]types.HttpNfcLeaseManifestEntry{},
	}
	l.Self = types.ManagedObjectReference{Type: "HttpNfcLease", Value: id}
	info := &types.HttpNfcLeaseInfo{Lease: l.Self, Entity: entity, LeaseTimeout: 300}
	base := *s.server.URL
	base.User, base.RawQuery = nil, ""
	for i, d := range st.disks {
		var vd *types.VirtualDisk
		for _, dev := range devices.SelectByType((*types.VirtualDisk)(nil)) {
			if dev.GetVirtualDevice().Key == d.key {
				vd = dev.(*types.VirtualDisk)
			}
		}
		if vd == nil {
			continue // detached since the snapshot
		}
		name := fmt.Sprintf("disk-%d.vmdk", i)
		u := base
		u.Path = nfcPath + id + "/" + name
		key := deviceURLKey(entity, devices, vd)
		l.disks[name] = &leaseDisk{index: i, key: key, view: views[i]}
		info.DeviceUrl = append(info.DeviceUrl, types.HttpNfcLeaseDeviceUrl{
			Key:       key,
			ImportKey: fmt.Sprintf("/%s/%s", st.name, strings.TrimPrefix(key, "/"+entity.Value+"/")),
			Url:       u.String(),
			Disk:      types.NewBool(true),
			TargetId:  name,
		})
		info.TotalDiskCapacityInKB += d.capacity / 1024
	}
	l.Info = info
	ctx.Map.Put(l)
	s.mu.Lock()
	s.leases[id] = l
	s.mu.Unlock()
	return l
}

func (l *lease) isOpen() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open
}

func (l *lease) finish(ctx *simulator.Context, aborted bool) types.BaseMethodFault {
	l.mu.Lock()
	was := l.open
	l.open = false
	l.mu.Unlock()
	if !was {
		return &types.InvalidState{}
	}
	s := l.sim
	s.mu.Lock()
	delete(s.leases, l.Self.Value)
	if aborted {
		s.aborted++
	} else {
		s.completed++
	}
	s.mu.Unlock()
	state := types.HttpNfcLeaseStateDone
	if aborted {
		state = types.HttpNfcLeaseStateError
	}
	ctx.Update(l, []types.PropertyChange{{Name: "state", Val: state}})
	ctx.Map.Remove(ctx, l.Self)
	return nil
}

func (l *lease) HttpNfcLeaseComplete(ctx *simulator.Context, req *types.HttpNfcLeaseComplete) soap.HasFault {
	body := &methods.HttpNfcLeaseCompleteBody{}
	if f := l.finish(ctx, false); f != nil {
		body.Fault_ = simulator.Fault("lease is no longer open", f)
		return body
	}
	body.Res = &types.HttpNfcLeaseCompleteResponse{}
	return body
}

func (l *lease) HttpNfcLeaseAbort(ctx *simulator.Context, req *types.HttpNfcLeaseAbort) soap.HasFault {
	body := &methods.HttpNfcLeaseAbortBody{}
	if f := l.finish(ctx, true); f != nil {
		body.Fault_ = simulator.Fault("lease is no longer open", f)
		return body
	}
	body.Res = &types.HttpNfcLeaseAbortResponse{}
	return body
}

func (l *lease) HttpNfcLeaseProgress(ctx *simulator.Context, req *types.HttpNfcLeaseProgress) soap.HasFault {
	body := &methods.HttpNfcLeaseProgressBody{}
	if !l.isOpen() {
		body.Fault_ = simulator.Fault("lease is no longer open", &types.InvalidState{})
		return body
	}
	if req.Percent < 0 || req.Percent > 100 {
		body.Fault_ = simulator.Fault("percent out of range", &types.InvalidArgument{InvalidProperty: "percent"})
		return body
	}
	l.mu.Lock()
	l.progress = int(req.Percent)
	l.renewed = time.Now()
	l.mu.Unlock()
	ctx.Update(l, []types.PropertyChange{{Name: "transferProgress", Val: req.Percent}})
	body.Res = &types.HttpNfcLeaseProgressResponse{}
	return body
}

// HttpNfcLeaseGetManifest lists the SHA-1 and size of every disk streamed in
// full through this lease.
func (l *lease) HttpNfcLeaseGetManifest(ctx *simulator.Context, req *types.HttpNfcLeaseGetManifest) soap.HasFault {
	l.mu.Lock()
	defer l.mu.Unlock()
	var entries []types.HttpNfcLeaseManifestEntry
	for _, e := range l.manifest {
		entries = append(entries, e)
	}
	return &methods.HttpNfcLeaseGetManifestBody{Res: &types.HttpNfcLeaseGetManifestResponse{Returnval: entries}}
}

// expireLeases ends leases whose holder stopped calling
// HttpNfcLeaseProgress, as vCenter does after the lease timeout.
func (s *Sim) expireLeases() {
	period := min(s.opts.LeaseTimeout/4, time.Second)
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		var stale []*lease
		for _, l := range s.leases {
			l.mu.Lock()
			if l.open && time.Since(l.renewed) > s.opts.LeaseTimeout {
				stale = append(stale, l)
			}
			l.mu.Unlock()
		}
		s.mu.Unlock()
		for _, l := range stale {
			l.expire()
		}
	}
}

func (l *lease) expire() {
	l.mu.Lock()
	was := l.open
	l.open = false
	l.mu.Unlock()
	if !was {
		return
	}
	s := l.sim
	s.mu.Lock()
	delete(s.leases, l.Self.Value)
	s.expired++
	s.mu.Unlock()
	ctx := s.model.Service.Context
	s.model.Map().WithLock(ctx, l, func() {
		ctx.Update(l, []types.PropertyChange{
			{Name: "state", Val: types.HttpNfcLeaseStateError},
			{Name: "error", Val: &types.LocalizedMethodFault{Fault: &types.Timedout{}, LocalizedMessage: "lease timed out"}},
		})
	})
	s.model.Map().Remove(ctx, l.Self)
}

var errInjected = errors.New("injected export failure")

// serveNFC streams a disk of an open lease as a streamOptimized VMDK,
// generated while it is sent (chunked, never buffered whole).
func (s *Sim) serveNFC(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "export leases are read with GET", http.StatusMethodNotAllowed)
		return
	}
	p, _ := url.PathUnescape(strings.TrimPrefix(r.URL.Path, nfcPath))
	id, name, _ := strings.Cut(p, "/")
	cookie, _ := r.Cookie(soap.SessionCookieName)
	s.mu.Lock()
	l := s.leases[id]
	authorized := cookie != nil && s.sessionKeys[cookie.Value]
	s.mu.Unlock()
	if !authorized {
		http.Error(w, "no valid session cookie", http.StatusForbidden)
		return
	}
	if l == nil {
		http.Error(w, "no open lease "+id, http.StatusNotFound)
		return
	}
	d := l.disks[name]
	if d == nil {
		http.Error(w, "lease "+id+" has no file "+name, http.StatusNotFound)
		return
	}
	limit, faulty := s.takeFault(l.vm, d.index)
	w.Header().Set("Content-Type", "application/x-vnd.vmware-streamVmdk")
	sum := sha1.New()
	out := &leaseWriter{w: w, l: l, limit: limit, faulty: faulty}
	n, err := disk.WriteStreamOptimized(io.MultiWriter(out, sum), d.view)
	if err != nil {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		// Cut the connection so the client sees a truncated body, not a
		// complete one.
		panic(http.ErrAbortHandler)
	}
	l.mu.Lock()
	l.manifest[d.key] = types.HttpNfcLeaseManifestEntry{Key: d.key, Sha1: hex.EncodeToString(sum.Sum(nil)), Size: n}
	l.mu.Unlock()
}

// leaseWriter stops the stream when the lease is closed under it or an
// injected fault's byte budget runs out.
type leaseWriter struct {
	w      io.Writer
	l      *lease
	n      int64
	limit  int64
	faulty bool
}

func (lw *leaseWriter) Write(p []byte) (int, error) {
	if !lw.l.isOpen() {
		return 0, errors.New("lease closed")
	}
	if lw.faulty && lw.n+int64(len(p)) > lw.limit {
		k, _ := lw.w.Write(p[:lw.limit-lw.n])
		lw.n += int64(k)
		return k, errInjected
	}
	k, err := lw.w.Write(p)
	lw.n += int64(k)
	return k, err
}
