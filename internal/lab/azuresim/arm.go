package azuresim

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	azfake "github.com/Azure/azure-sdk-for-go/sdk/azcore/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/to"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6"
	computefake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/compute/armcompute/v6/fake"
	"github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7"
	networkfake "github.com/Azure/azure-sdk-for-go/sdk/resourcemanager/network/armnetwork/v7/fake"

	"github.com/rehost/rehost/internal/lab/diskwrite"
)

// route maps an HTTP request to the SDK operation whose fake serves it:
// the generated fake transports dispatch on the operation name the client
// puts in the request context, which a request arriving over the network
// no longer carries.
type route struct {
	method string
	path   *regexp.Regexp
	api    string
}

const (
	sub = `^/subscriptions/[^/]+`
	rgp = sub + `/resourceGroups/[^/]+`
	cp  = `/providers/Microsoft\.Compute`
	np  = `/providers/Microsoft\.Network`
)

var routes = []route{
	{"GET", regexp.MustCompile(sub + cp + `/virtualMachines$`), "VirtualMachinesClient.NewListAllPager"},
	{"GET", regexp.MustCompile(rgp + cp + `/virtualMachines$`), "VirtualMachinesClient.NewListPager"},
	{"GET", regexp.MustCompile(rgp + cp + `/virtualMachines/[^/]+$`), "VirtualMachinesClient.Get"},
	{"GET", regexp.MustCompile(sub + cp + `/disks$`), "DisksClient.NewListPager"},
	{"GET", regexp.MustCompile(rgp + cp + `/disks$`), "DisksClient.NewListByResourceGroupPager"},
	{"GET", regexp.MustCompile(rgp + cp + `/disks/[^/]+$`), "DisksClient.Get"},
	{"GET", regexp.MustCompile(sub + cp + `/snapshots$`), "SnapshotsClient.NewListPager"},
	{"GET", regexp.MustCompile(rgp + cp + `/snapshots$`), "SnapshotsClient.NewListByResourceGroupPager"},
	{"GET", regexp.MustCompile(rgp + cp + `/snapshots/[^/]+$`), "SnapshotsClient.Get"},
	{"PUT", regexp.MustCompile(rgp + cp + `/snapshots/[^/]+$`), "SnapshotsClient.BeginCreateOrUpdate"},
	{"PATCH", regexp.MustCompile(rgp + cp + `/snapshots/[^/]+$`), "SnapshotsClient.BeginUpdate"},
	{"DELETE", regexp.MustCompile(rgp + cp + `/snapshots/[^/]+$`), "SnapshotsClient.BeginDelete"},
	{"POST", regexp.MustCompile(rgp + cp + `/snapshots/[^/]+/beginGetAccess$`), "SnapshotsClient.BeginGrantAccess"},
	{"POST", regexp.MustCompile(rgp + cp + `/snapshots/[^/]+/endGetAccess$`), "SnapshotsClient.BeginRevokeAccess"},
	{"GET", regexp.MustCompile(sub + cp + `/skus$`), "ResourceSKUsClient.NewListPager"},
	{"GET", regexp.MustCompile(rgp + cp + `/diskEncryptionSets/[^/]+$`), "DiskEncryptionSetsClient.Get"},
	{"GET", regexp.MustCompile(sub + np + `/networkInterfaces$`), "InterfacesClient.NewListAllPager"},
	{"GET", regexp.MustCompile(rgp + np + `/networkInterfaces$`), "InterfacesClient.NewListPager"},
	{"GET", regexp.MustCompile(rgp + np + `/networkInterfaces/[^/]+$`), "InterfacesClient.Get"},
}

// armHandler serves Resource Manager: it authenticates the bearer token,
// names the operation and hands the request to the generated fake
// transport, which calls the Sim's implementation.
type armHandler struct {
	s *Sim
	fakes
	// lro remembers which operation started the long-running operation at
	// a path, for its polls ("…/get/fake/status").
	lro sync.Map
	// walks are the paged lists being read, each with fakes of its own
	// (see walk).
	walks    sync.Map
	lastWalk atomic.Int64
}

// walkParam names a paged list's walk in its next links.
const walkParam = "rehost-walk"

// fakes are the generated transports a request is handed to.
type fakes struct{ compute, network policy.Transporter }

func (s *Sim) newFakes() fakes {
	return fakes{computefake.NewServerFactoryTransport(s.computeFakes()), networkfake.NewServerFactoryTransport(s.networkFakes())}
}

// walk gives one client's read of a paged list fakes of its own. The
// generated fakes keep a pager's pages by the request's path, so two
// clients listing the same collection at once (the catalog's poll and a
// run's lookup of the VM sizes) would take each other's pages, and the
// one that finished second would find its pager gone. The first page's
// request gets a walk id as a query parameter, which the fakes copy into
// every next link.
func (h *armHandler) walk(req *http.Request) (string, fakes) {
	q := req.URL.Query()
	if id := q.Get(walkParam); id != "" {
		if f, ok := h.walks.Load(id); ok {
			return id, f.(fakes)
		}
	}
	id := strconv.FormatInt(h.lastWalk.Add(1), 10)
	q.Set(walkParam, id)
	req.URL.RawQuery = q.Encode()
	f := h.s.newFakes()
	h.walks.Store(id, f)
	return id, f
}

var (
	pollSuffix = regexp.MustCompile(`/get/fake/status$`)
	pageSuffix = regexp.MustCompile(`/fake_page_\d+$`)
)

func (h *armHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.s.serveEntra(w, r) {
		return
	}
	if r.URL.Path == writePath {
		diskwrite.Handler(h.s.ClientID, h.s.ClientSecret, h.s.writable).ServeHTTP(w, r)
		return
	}
	if !h.s.validToken(r.Header.Get("Authorization"), armAudience) {
		w.Header().Set("WWW-Authenticate", `Bearer authorization_uri="`+h.s.AuthorityURL+h.s.TenantID+`", error="invalid_token"`)
		writeARMError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "the access token is missing or invalid")
		return
	}
	path := pageSuffix.ReplaceAllString(r.URL.Path, "")
	poll := pollSuffix.MatchString(path)
	path = pollSuffix.ReplaceAllString(path, "")
	api := ""
	if poll {
		if v, ok := h.lro.Load(strings.ToLower(path)); ok {
			api = v.(string)
		}
	} else {
		for _, rt := range routes {
			if rt.method == r.Method && rt.path.MatchString(path) {
				api = rt.api
				break
			}
		}
		if strings.Contains(api, ".Begin") {
			h.lro.Store(strings.ToLower(path), api)
		}
	}
	if api == "" {
		writeARMError(w, http.StatusNotFound, "NoRegisteredProviderFound", fmt.Sprintf("no fake serves %s %s", r.Method, r.URL.Path))
		return
	}
	op := api
	if poll {
		op += PollSuffix
	}
	if f, ok := h.s.arrive(op, r); ok {
		answerFault(w, op, f)
		return
	}
	req := r.Clone(context.WithValue(r.Context(), runtime.CtxAPINameKey{}, api))
	req.RequestURI = ""
	req.URL.Scheme, req.URL.Host = "https", r.Host
	f, walk := h.fakes, ""
	if strings.Contains(api, ".NewList") {
		walk, f = h.walk(req)
	}
	tr := f.compute
	if strings.HasPrefix(api, "InterfacesClient.") {
		tr = f.network
	}
	resp, err := tr.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if walk != "" && (err != nil || !bytes.Contains(body, []byte(`"nextLink"`))) {
		h.walks.Delete(walk) // its last page
	}
	var re *azcore.ResponseError
	if errors.As(err, &re) { // what a fake answered with an ErrorResponder
		writeARMError(w, re.StatusCode, re.ErrorCode, errorMessages[re.ErrorCode])
		return
	}
	if err != nil {
		writeARMError(w, http.StatusInternalServerError, "InternalServerError", err.Error())
		return
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	if code := resp.Header.Get("x-ms-error-code"); code != "" && resp.ContentLength <= 0 {
		writeARMError(w, resp.StatusCode, code, errorMessages[code])
		return
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(body)
}

// errorMessages are the messages Azure gives with the error codes the
// fakes answer (the fakes carry a code only).
var errorMessages = map[string]string{
	"ResourceNotFound":         "the resource was not found",
	"OperationNotAllowed":      "the snapshot has an active SAS (read access granted): revoke the access before deleting it",
	"AuthorizationFailed":      "the client does not have authorization to perform action 'Microsoft.Compute/diskEncryptionSets/read' over the disk encryption set",
	"InvalidParameter":         "a parameter of the request is invalid",
	"SnapshotCopyNotCompleted": "the snapshot's background copy has not completed; wait until completionPercent is 100",
}

func writeARMError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("x-ms-error-code", code)
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q}}`, code, msg)
}

// serve starts the Resource Manager + Entra ID listener and the data front.
func (s *Sim) serve() error {
	pair, caPEM, err := selfSigned()
	if err != nil {
		return err
	}
	s.CAPEM = string(caPEM)
	h := &armHandler{s: s, fakes: s.newFakes()}
	start := func(h http.Handler) (*http.Server, string, error) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, "", err
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
		go srv.ServeTLS(ln, "", "")
		return srv, "https://" + ln.Addr().String(), nil
	}
	var u string
	if s.arm, u, err = start(h); err != nil {
		return err
	}
	s.ARMURL, s.AuthorityURL = u, u+"/"
	if s.front, s.BlobURL, err = start(http.HandlerFunc(s.serveBlob)); err != nil {
		return err
	}
	return nil
}

// lro answers a long-running operation: LROSteps non-terminal responses,
// then result.
func lro[T any](s *Sim, status int, result T) (resp azfake.PollerResponder[T], errResp azfake.ErrorResponder) {
	for range s.o.LROSteps {
		resp.AddNonTerminalResponse(http.StatusAccepted, nil)
	}
	resp.SetTerminalResponse(status, result, nil)
	return
}

// get answers a read of the resource id in m (under the Sim's lock), or
// ResourceNotFound.
func get[T, R any](s *Sim, m map[string]*T, id string, answer func(*T) R) (resp azfake.Responder[R], errResp azfake.ErrorResponder) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := m[strings.ToLower(id)]
	if !ok {
		errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
		return
	}
	resp.SetResponse(http.StatusOK, answer(r), nil)
	return
}

func notFound[T any]() (resp azfake.PollerResponder[T], errResp azfake.ErrorResponder) {
	errResp.SetResponseError(http.StatusNotFound, "ResourceNotFound")
	return
}

// pages splits items into pages of n.
func pages[T, R any](items []T, n int, wrap func([]T) R) (resp azfake.PagerResponder[R]) {
	if len(items) == 0 {
		resp.AddPage(http.StatusOK, wrap(nil), nil)
		return
	}
	for i := 0; i < len(items); i += n {
		resp.AddPage(http.StatusOK, wrap(items[i:min(i+n, len(items))]), nil)
	}
	return
}

func inRG(id, rg string) bool {
	return strings.Contains(strings.ToLower(id), "/resourcegroups/"+strings.ToLower(rg)+"/")
}

func (s *Sim) computeFakes() *computefake.ServerFactory {
	f := &computefake.ServerFactory{}
	f.VirtualMachinesServer = computefake.VirtualMachinesServer{
		Get: func(_ context.Context, rg, name string, o *armcompute.VirtualMachinesClientGetOptions) (azfake.Responder[armcompute.VirtualMachinesClientGetResponse], azfake.ErrorResponder) {
			return get(s, s.vms, s.rgID(rg)+"/providers/Microsoft.Compute/virtualMachines/"+name, func(v *vmState) armcompute.VirtualMachinesClientGetResponse {
				return armcompute.VirtualMachinesClientGetResponse{VirtualMachine: vmView(v.vm, o != nil && o.Expand != nil)}
			})
		},
		NewListPager: func(rg string, o *armcompute.VirtualMachinesClientListOptions) azfake.PagerResponder[armcompute.VirtualMachinesClientListResponse] {
			vms := s.listVMs(rg, o != nil && o.Expand != nil)
			return pages(vms, 2, func(l []*armcompute.VirtualMachine) armcompute.VirtualMachinesClientListResponse {
				return armcompute.VirtualMachinesClientListResponse{VirtualMachineListResult: armcompute.VirtualMachineListResult{Value: l}}
			})
		},
		NewListAllPager: func(o *armcompute.VirtualMachinesClientListAllOptions) azfake.PagerResponder[armcompute.VirtualMachinesClientListAllResponse] {
			vms := s.listVMs("", o != nil && o.Expand != nil)
			return pages(vms, 2, func(l []*armcompute.VirtualMachine) armcompute.VirtualMachinesClientListAllResponse {
				return armcompute.VirtualMachinesClientListAllResponse{VirtualMachineListResult: armcompute.VirtualMachineListResult{Value: l}}
			})
		},
	}
	f.DisksServer = computefake.DisksServer{
		Get: func(_ context.Context, rg, name string, _ *armcompute.DisksClientGetOptions) (azfake.Responder[armcompute.DisksClientGetResponse], azfake.ErrorResponder) {
			return get(s, s.disks, s.rgID(rg)+"/providers/Microsoft.Compute/disks/"+name, func(d *diskState) armcompute.DisksClientGetResponse {
				return armcompute.DisksClientGetResponse{Disk: d.disk}
			})
		},
		NewListPager: func(*armcompute.DisksClientListOptions) azfake.PagerResponder[armcompute.DisksClientListResponse] {
			return pages(s.listDisks(""), 50, func(l []*armcompute.Disk) armcompute.DisksClientListResponse {
				return armcompute.DisksClientListResponse{DiskList: armcompute.DiskList{Value: l}}
			})
		},
		NewListByResourceGroupPager: func(rg string, _ *armcompute.DisksClientListByResourceGroupOptions) azfake.PagerResponder[armcompute.DisksClientListByResourceGroupResponse] {
			return pages(s.listDisks(rg), 50, func(l []*armcompute.Disk) armcompute.DisksClientListByResourceGroupResponse {
				return armcompute.DisksClientListByResourceGroupResponse{DiskList: armcompute.DiskList{Value: l}}
			})
		},
	}
	f.SnapshotsServer = computefake.SnapshotsServer{
		Get: func(_ context.Context, rg, name string, _ *armcompute.SnapshotsClientGetOptions) (azfake.Responder[armcompute.SnapshotsClientGetResponse], azfake.ErrorResponder) {
			return get(s, s.snaps, s.snapID(rg, name), func(sn *snapState) armcompute.SnapshotsClientGetResponse {
				sn.advanceCopy()
				return armcompute.SnapshotsClientGetResponse{Snapshot: sn.snap}
			})
		},
		NewListPager: func(*armcompute.SnapshotsClientListOptions) azfake.PagerResponder[armcompute.SnapshotsClientListResponse] {
			return pages(s.listSnaps(""), 50, func(l []*armcompute.Snapshot) armcompute.SnapshotsClientListResponse {
				return armcompute.SnapshotsClientListResponse{SnapshotList: armcompute.SnapshotList{Value: l}}
			})
		},
		NewListByResourceGroupPager: func(rg string, _ *armcompute.SnapshotsClientListByResourceGroupOptions) azfake.PagerResponder[armcompute.SnapshotsClientListByResourceGroupResponse] {
			return pages(s.listSnaps(rg), 50, func(l []*armcompute.Snapshot) armcompute.SnapshotsClientListByResourceGroupResponse {
				return armcompute.SnapshotsClientListByResourceGroupResponse{SnapshotList: armcompute.SnapshotList{Value: l}}
			})
		},
		BeginCreateOrUpdate: func(ctx context.Context, rg, name string, in armcompute.Snapshot, _ *armcompute.SnapshotsClientBeginCreateOrUpdateOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientCreateOrUpdateResponse], errResp azfake.ErrorResponder) {
			sn, code := s.createSnapshot(ctx, rg, name, in)
			if code != "" {
				errResp.SetResponseError(http.StatusBadRequest, code)
				return
			}
			return lro(s, http.StatusOK, armcompute.SnapshotsClientCreateOrUpdateResponse{Snapshot: sn})
		},
		BeginUpdate: func(_ context.Context, rg, name string, in armcompute.SnapshotUpdate, _ *armcompute.SnapshotsClientBeginUpdateOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientUpdateResponse], errResp azfake.ErrorResponder) {
			sn, ok := s.updateSnapshot(rg, name, in)
			if !ok {
				return notFound[armcompute.SnapshotsClientUpdateResponse]()
			}
			return lro(s, http.StatusOK, armcompute.SnapshotsClientUpdateResponse{Snapshot: sn})
		},
		BeginDelete: func(ctx context.Context, rg, name string, _ *armcompute.SnapshotsClientBeginDeleteOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientDeleteResponse], errResp azfake.ErrorResponder) {
			switch s.deleteSnapshot(ctx, rg, name) {
			case "":
				return lro(s, http.StatusOK, armcompute.SnapshotsClientDeleteResponse{})
			case "gone":
				resp.SetTerminalResponse(http.StatusNoContent, armcompute.SnapshotsClientDeleteResponse{}, nil)
				return
			}
			errResp.SetResponseError(http.StatusConflict, "OperationNotAllowed")
			return
		},
		BeginGrantAccess: func(_ context.Context, rg, name string, in armcompute.GrantAccessData, _ *armcompute.SnapshotsClientBeginGrantAccessOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientGrantAccessResponse], errResp azfake.ErrorResponder) {
			u, status, code := s.grantAccess(rg, name, in)
			if code != "" {
				errResp.SetResponseError(status, code)
				return
			}
			return lro(s, http.StatusOK, armcompute.SnapshotsClientGrantAccessResponse{AccessURI: armcompute.AccessURI{AccessSAS: to.Ptr(u)}})
		},
		BeginRevokeAccess: func(_ context.Context, rg, name string, _ *armcompute.SnapshotsClientBeginRevokeAccessOptions) (resp azfake.PollerResponder[armcompute.SnapshotsClientRevokeAccessResponse], errResp azfake.ErrorResponder) {
			if !s.revokeAccess(rg, name) {
				return notFound[armcompute.SnapshotsClientRevokeAccessResponse]()
			}
			return lro(s, http.StatusOK, armcompute.SnapshotsClientRevokeAccessResponse{})
		},
	}
	f.ResourceSKUsServer = computefake.ResourceSKUsServer{
		NewListPager: func(*armcompute.ResourceSKUsClientListOptions) azfake.PagerResponder[armcompute.ResourceSKUsClientListResponse] {
			var skus []*armcompute.ResourceSKU
			for _, z := range Sizes {
				skus = append(skus, &armcompute.ResourceSKU{Name: to.Ptr(z.Name), ResourceType: to.Ptr("virtualMachines"), Locations: []*string{to.Ptr(s.location)},
					Capabilities: []*armcompute.ResourceSKUCapabilities{
						{Name: to.Ptr("vCPUs"), Value: to.Ptr(fmt.Sprint(z.CPUs))},
						{Name: to.Ptr("MemoryGB"), Value: to.Ptr(fmt.Sprint(z.MemoryGB))},
						{Name: to.Ptr("HyperVGenerations"), Value: to.Ptr("V1,V2")},
					}})
			}
			skus = append(skus, &armcompute.ResourceSKU{Name: to.Ptr("Premium_LRS"), ResourceType: to.Ptr("disks"), Locations: []*string{to.Ptr(s.location)}})
			return pages(skus, 4, func(l []*armcompute.ResourceSKU) armcompute.ResourceSKUsClientListResponse {
				return armcompute.ResourceSKUsClientListResponse{ResourceSKUsResult: armcompute.ResourceSKUsResult{Value: l}}
			})
		},
	}
	f.DiskEncryptionSetsServer = computefake.DiskEncryptionSetsServer{
		Get: func(_ context.Context, rg, name string, _ *armcompute.DiskEncryptionSetsClientGetOptions) (resp azfake.Responder[armcompute.DiskEncryptionSetsClientGetResponse], errResp azfake.ErrorResponder) {
			s.mu.Lock()
			defer s.mu.Unlock()
			d, ok := s.des[strings.ToLower(s.rgID(rg)+"/providers/Microsoft.Compute/diskEncryptionSets/"+name)]
			if !ok {
				// The identity has no role on the set: Azure answers 403.
				errResp.SetResponseError(http.StatusForbidden, "AuthorizationFailed")
				return
			}
			resp.SetResponse(http.StatusOK, armcompute.DiskEncryptionSetsClientGetResponse{DiskEncryptionSet: *d}, nil)
			return
		},
	}
	return f
}

func (s *Sim) networkFakes() *networkfake.ServerFactory {
	list := func(rg string) []*armnetwork.Interface {
		s.mu.Lock()
		defer s.mu.Unlock()
		var out []*armnetwork.Interface
		for _, n := range s.nics {
			if rg == "" || inRG(*n.ID, rg) {
				c := *n
				out = append(out, &c)
			}
		}
		sort.Slice(out, func(i, j int) bool { return *out[i].ID < *out[j].ID })
		return out
	}
	return &networkfake.ServerFactory{InterfacesServer: networkfake.InterfacesServer{
		Get: func(_ context.Context, rg, name string, _ *armnetwork.InterfacesClientGetOptions) (azfake.Responder[armnetwork.InterfacesClientGetResponse], azfake.ErrorResponder) {
			return get(s, s.nics, s.rgID(rg)+"/providers/Microsoft.Network/networkInterfaces/"+name, func(n *armnetwork.Interface) armnetwork.InterfacesClientGetResponse {
				return armnetwork.InterfacesClientGetResponse{Interface: *n}
			})
		},
		NewListPager: func(rg string, _ *armnetwork.InterfacesClientListOptions) azfake.PagerResponder[armnetwork.InterfacesClientListResponse] {
			return pages(list(rg), 50, func(l []*armnetwork.Interface) armnetwork.InterfacesClientListResponse {
				return armnetwork.InterfacesClientListResponse{InterfaceListResult: armnetwork.InterfaceListResult{Value: l}}
			})
		},
		NewListAllPager: func(*armnetwork.InterfacesClientListAllOptions) azfake.PagerResponder[armnetwork.InterfacesClientListAllResponse] {
			return pages(list(""), 50, func(l []*armnetwork.Interface) armnetwork.InterfacesClientListAllResponse {
				return armnetwork.InterfacesClientListAllResponse{InterfaceListResult: armnetwork.InterfaceListResult{Value: l}}
			})
		},
	}}
}

// vmView is a copy of v, with its instance view only when expanded.
func vmView(v armcompute.VirtualMachine, expand bool) armcompute.VirtualMachine {
	p := *v.Properties
	if !expand {
		p.InstanceView = nil
	}
	v.Properties = &p
	return v
}
