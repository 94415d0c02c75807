package azure

import (
	"context"
	"net/http"
	"net/url"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/arm"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
)

// The network interfaces are read over plain Resource Manager REST rather
// than through the armnetwork module: the source reads three of its
// operations and a handful of fields, and the module's generated models and
// clients cost the binary about 0.45 MB.

// nicAPIVersion is the Microsoft.Network api-version the reads use (the
// one armnetwork v7 sends for network interfaces).
const nicAPIVersion = "2025-01-01"

// netInterface is the part of a network interface the source reads.
type netInterface struct {
	ID         *string   `json:"id"`
	Name       *string   `json:"name"`
	Properties *nicProps `json:"properties"`
}

type nicProps struct {
	MacAddress                  *string        `json:"macAddress"`
	EnableAcceleratedNetworking *bool          `json:"enableAcceleratedNetworking"`
	IPConfigurations            []*nicIPConfig `json:"ipConfigurations"`
}

type nicIPConfig struct {
	Properties *struct {
		PrivateIPAddress *string `json:"privateIPAddress"`
		Subnet           *struct {
			ID *string `json:"id"`
		} `json:"subnet"`
	} `json:"properties"`
}

// nicPage is one page of a network interface listing.
type nicPage struct {
	Value    []*netInterface `json:"value"`
	NextLink *string         `json:"nextLink"`
}

// nicClient reads network interfaces through the Resource Manager
// pipeline of the compute clients: the same credential, cloud, transport
// and (disabled) SDK retries, s.call being the policy around each read.
type nicClient struct {
	sub string
	cl  *arm.Client
}

func newNICClient(sub string, cred azcore.TokenCredential, opts *arm.ClientOptions) (*nicClient, error) {
	cl, err := arm.NewClient("rehost-network", "v1.0.0", cred, opts)
	if err != nil {
		return nil, err
	}
	return &nicClient{sub: sub, cl: cl}, nil
}

// request builds a GET of path (below the Resource Manager endpoint) at
// nicAPIVersion.
func (c *nicClient) request(ctx context.Context, path string) (*policy.Request, error) {
	req, err := runtime.NewRequest(ctx, http.MethodGet, runtime.JoinPaths(c.cl.Endpoint(), path))
	if err != nil {
		return nil, err
	}
	q := req.Raw().URL.Query()
	q.Set("api-version", nicAPIVersion)
	req.Raw().URL.RawQuery = q.Encode()
	req.Raw().Header["Accept"] = []string{"application/json"}
	return req, nil
}

// list pages through the network interfaces of resource group rg, or of
// the whole subscription when rg is empty, following nextLink.
func (c *nicClient) list(rg string) *runtime.Pager[nicPage] {
	path := "/subscriptions/" + url.PathEscape(c.sub)
	if rg != "" {
		path += "/resourceGroups/" + url.PathEscape(rg)
	}
	path += "/providers/Microsoft.Network/networkInterfaces"
	return runtime.NewPager(runtime.PagingHandler[nicPage]{
		More: func(p nicPage) bool { return p.NextLink != nil && *p.NextLink != "" },
		Fetcher: func(ctx context.Context, prev *nicPage) (nicPage, error) {
			next := ""
			if prev != nil {
				next = *prev.NextLink
			}
			resp, err := runtime.FetcherForNextLink(ctx, c.cl.Pipeline(), next, func(ctx context.Context) (*policy.Request, error) {
				return c.request(ctx, path)
			}, nil)
			if err != nil {
				return nicPage{}, err
			}
			var p nicPage
			return p, runtime.UnmarshalAsJSON(resp, &p)
		},
	})
}

// get reads one network interface; an answer other than 200 is an
// *azcore.ResponseError, as the SDK clients return.
func (c *nicClient) get(ctx context.Context, rg, name string) (*netInterface, error) {
	req, err := c.request(ctx, "/subscriptions/"+url.PathEscape(c.sub)+"/resourceGroups/"+url.PathEscape(rg)+
		"/providers/Microsoft.Network/networkInterfaces/"+url.PathEscape(name))
	if err != nil {
		return nil, err
	}
	resp, err := c.cl.Pipeline().Do(req)
	if err != nil {
		return nil, err
	}
	if !runtime.HasStatusCode(resp, http.StatusOK) {
		return nil, runtime.NewResponseError(resp)
	}
	var n netInterface
	if err := runtime.UnmarshalAsJSON(resp, &n); err != nil {
		return nil, err
	}
	return &n, nil
}
