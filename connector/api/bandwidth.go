package api

import (
	"context"
	"time"

	"github.com/rehost/rehost/connector/bandwidth"
)

// GetBandwidthCapInput has no members.
type GetBandwidthCapInput struct{}

// SetBandwidthCapInput is the connector's bandwidth cap (bandwidth.Spec:
// a default rate, a zone and weekly windows, each with its rate). An empty
// input, or "unlimited" without windows, removes the cap.
type SetBandwidthCapInput struct {
	bandwidth.Spec
}

// BandwidthCap is the stored cap in canonical form and what is in force
// now.
type BandwidthCap struct {
	bandwidth.Spec
	// RateBytesPerSecond is the cap in force now (0: none), Rate the same
	// written in bits per second; Window is the 1-based window it comes
	// from (0: the default), until Until (absent: no change ahead).
	RateBytesPerSecond int64  `json:"rateBytesPerSecond"`
	Rate               string `json:"rate"`
	Window             int    `json:"window,omitempty"`
	Until              Time   `json:"until,omitzero"`
	// ThroughputBytesPerSecond is what this connector's runs sent over the
	// last five seconds, together; absent when the answer does not come
	// from the serving daemon (the CLI on the state directory).
	ThroughputBytesPerSecond *float64 `json:"throughputBytesPerSecond,omitempty"`
}

// GetBandwidthCap reports the stored cap and the rate in force.
func (l *Local) GetBandwidthCap(ctx context.Context, _ *GetBandwidthCapInput) (*BandwidthCap, error) {
	s, err := bandwidth.Load(ctx, l.D.Store)
	if err != nil {
		return nil, internal(err)
	}
	return l.bandwidthCap(s), nil
}

// SetBandwidthCap validates and stores the cap; the serving daemon (every
// member of a fleet) applies it within seconds, to the runs in flight too.
func (l *Local) SetBandwidthCap(ctx context.Context, in *SetBandwidthCapInput) (*BandwidthCap, error) {
	if in == nil {
		in = &SetBandwidthCapInput{}
	}
	s, err := bandwidth.Save(ctx, l.D.Store, in.Spec)
	if bandwidth.IsInvalid(err) {
		return nil, Errorf(ErrInvalidParameter, "%v", err)
	}
	if err != nil {
		return nil, internal(err)
	}
	l.D.Log.Info("bandwidth cap changed", "cap", l.bandwidthCap(s).Spec)
	l.D.WakeBandwidth()
	l.notify()
	return l.bandwidthCap(s), nil
}

func (l *Local) bandwidthCap(s *bandwidth.Schedule) *BandwidthCap {
	out := &BandwidthCap{Spec: bandwidth.Spec{Default: bandwidth.Unlimited}, Rate: bandwidth.Unlimited}
	if s != nil {
		out.Spec = s.Spec()
		rate, w, until := s.InForce(time.Now())
		out.RateBytesPerSecond, out.Rate, out.Window = int64(rate), rate.String(), w+1
		if !until.IsZero() {
			out.Until = At(until)
		}
	}
	if !l.Started.IsZero() {
		tp := l.D.Bandwidth.Status().Throughput
		out.ThroughputBytesPerSecond = &tp
	}
	return out
}
