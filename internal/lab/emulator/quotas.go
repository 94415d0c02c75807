package emulator

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
)

// Service Quotas, read-only: ListServiceQuotas and GetServiceQuota of the
// quotas rehost's account preflight reads. Values default to AWS's
// defaults; Config.Quotas changes them by quota name. ImportImage and
// ImportSnapshot honour their concurrent task quotas as AWS does, each kind
// counted apart: a task beyond its quota is refused with
// ResourceCountLimitExceeded, not queued.

const quotasPrefix = "ServiceQuotasV20190624"

// Quota is one service quota.
type Quota struct {
	ServiceCode, ServiceName, QuotaCode, QuotaName string
	Value                                          float64
	Adjustable                                     bool
}

// defaultQuotas are the quotas the emulator lists. The EBS snapshot quota
// is AWS's (code and name); the concurrent import quotas (20 tasks of each
// kind per region) are listed under the names rehost's preflight looks
// for, with codes of the emulator's own (AWS's documentation names the
// limits without Service Quotas codes).
var defaultQuotas = []Quota{
	{ServiceCode: "ebs", ServiceName: "Amazon Elastic Block Store (Amazon EBS)", QuotaCode: "L-309BACF6", QuotaName: "Snapshots per Region", Value: 100000, Adjustable: true},
	{ServiceCode: "ec2", ServiceName: "Amazon Elastic Compute Cloud (Amazon EC2)", QuotaCode: "L-8C1D2E3F", QuotaName: "Concurrent import image tasks", Value: 20, Adjustable: true},
	{ServiceCode: "ec2", ServiceName: "Amazon Elastic Compute Cloud (Amazon EC2)", QuotaCode: "L-8C1D2E40", QuotaName: "Concurrent import snapshot tasks", Value: 20, Adjustable: true},
}

func (e *Emulator) quotas() []Quota {
	out := slices.Clone(defaultQuotas)
	for i := range out {
		if v, ok := e.cfg.Quotas[out[i].QuotaName]; ok {
			out[i].Value = v
		}
	}
	return out
}

type quotaJSON struct {
	ServiceCode, ServiceName, QuotaArn, QuotaCode, QuotaName, Unit string
	Value                                                          float64
	Adjustable, GlobalQuota                                        bool
}

// quotaValue is the value of the quota named name (0 for none).
func (e *Emulator) quotaValue(name string) float64 {
	for _, q := range e.quotas() {
		if q.QuotaName == name {
			return q.Value
		}
	}
	return 0
}

func (e *Emulator) quotaJSON(q Quota) quotaJSON {
	return quotaJSON{ServiceCode: q.ServiceCode, ServiceName: q.ServiceName, QuotaCode: q.QuotaCode, QuotaName: q.QuotaName, Unit: "None",
		QuotaArn: "arn:" + e.partition() + ":servicequotas:" + e.cfg.Region + ":" + e.cfg.AccountID + ":" + q.ServiceCode + "/" + q.QuotaCode,
		Value:    q.Value, Adjustable: q.Adjustable}
}

func (e *Emulator) quotaActions() map[string]jsonAction {
	return map[string]jsonAction{
		"ListServiceQuotas": e.listServiceQuotas,
		"GetServiceQuota":   e.getServiceQuota,
	}
}

func noSuchQuota(what string) *jsonError {
	return &jsonError{http.StatusBadRequest, "NoSuchResourceException", "The request failed because the specified " + what + " does not exist."}
}

func (e *Emulator) listServiceQuotas(in json.RawMessage) (any, error) {
	var req struct {
		ServiceCode, NextToken string
		MaxResults             int
	}
	if err := decodeJSON(in, &req); err != nil {
		return nil, err
	}
	var all []quotaJSON
	known := false
	for _, q := range e.quotas() {
		if q.ServiceCode == req.ServiceCode {
			known = true
			all = append(all, e.quotaJSON(q))
		}
	}
	if !known {
		return nil, noSuchQuota("service " + req.ServiceCode)
	}
	start := 0
	if req.NextToken != "" {
		n, err := strconv.Atoi(req.NextToken)
		if err != nil || n < 0 || n > len(all) {
			return nil, &jsonError{http.StatusBadRequest, "InvalidPaginationTokenException", "Invalid input: the next token is not one this service gave"}
		}
		start = n
	}
	limit := req.MaxResults
	if limit <= 0 {
		limit = 100
	}
	end := min(start+limit, len(all))
	out := struct {
		Quotas    []quotaJSON
		NextToken string `json:",omitempty"`
	}{Quotas: all[start:end]}
	if end < len(all) {
		out.NextToken = strconv.Itoa(end)
	}
	return out, nil
}

func (e *Emulator) getServiceQuota(in json.RawMessage) (any, error) {
	var req struct{ ServiceCode, QuotaCode string }
	if err := decodeJSON(in, &req); err != nil {
		return nil, err
	}
	for _, q := range e.quotas() {
		if q.ServiceCode == req.ServiceCode && q.QuotaCode == req.QuotaCode {
			return struct{ Quota quotaJSON }{e.quotaJSON(q)}, nil
		}
	}
	return nil, noSuchQuota("quota " + req.ServiceCode + "/" + req.QuotaCode)
}
