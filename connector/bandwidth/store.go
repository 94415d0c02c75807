package bandwidth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/rehost/rehost/pkg/store"
)

// Setting is the store setting that holds the cap (a Spec, JSON, in
// canonical form): one row, shared by every member of a fleet.
const Setting = "bandwidth"

// Settings is the part of the store the cap is kept in.
type Settings interface {
	GetSetting(ctx context.Context, key string) ([]byte, error)
	PutSetting(ctx context.Context, key string, value []byte) error
	DeleteSetting(ctx context.Context, key string) error
}

// Load reads the stored cap and compiles it; no cap stored is a nil
// Schedule.
func Load(ctx context.Context, st Settings) (*Schedule, error) {
	b, err := st.GetSetting(ctx, Setting)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the bandwidth cap: %w", err)
	}
	return decode(b)
}

func decode(b []byte) (*Schedule, error) {
	var spec Spec
	if err := json.Unmarshal(b, &spec); err != nil {
		return nil, fmt.Errorf("read the bandwidth cap: the stored value is not a cap: %w (set it again with 'rehost connector bandwidth set')", err)
	}
	s, err := Compile(spec)
	if err != nil {
		return nil, fmt.Errorf("read the bandwidth cap: %w (set it again with 'rehost connector bandwidth set')", err)
	}
	return s, nil
}

// Save validates spec and stores it in canonical form, which it returns
// compiled. A spec without any cap (unlimited, no windows) removes the
// setting.
func Save(ctx context.Context, st Settings, spec Spec) (*Schedule, error) {
	s, err := Compile(spec)
	if err != nil {
		return nil, err
	}
	if s.def == 0 && len(s.windows) == 0 {
		if err := st.DeleteSetting(ctx, Setting); err != nil {
			return nil, fmt.Errorf("clear the bandwidth cap: %w", err)
		}
		return nil, nil
	}
	b, err := json.Marshal(s.Spec())
	if err != nil {
		return nil, err
	}
	if err := st.PutSetting(ctx, Setting, b); err != nil {
		return nil, fmt.Errorf("save the bandwidth cap: %w", err)
	}
	return s, nil
}

// PollEvery is how often Watch reads the stored cap: a change made by the
// CLI, the console or another member of the fleet is in force within it.
var PollEvery = 2 * time.Second

// Watch keeps c at the stored cap until ctx ends: it loads it now, then
// every PollEvery and whenever wake receives. A stored cap that does not
// compile (written by a newer rehost) is logged and the last good one kept.
func (c *Cap) Watch(ctx context.Context, st Settings, wake <-chan struct{}, log *slog.Logger) {
	var last []byte
	loaded := false
	load := func() {
		b, err := st.GetSetting(ctx, Setting)
		if errors.Is(err, store.ErrNotFound) {
			b, err = nil, nil
		}
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("read the bandwidth cap; the one in force stays", "err", err)
			}
			return
		}
		if loaded && bytes.Equal(b, last) {
			return
		}
		var s *Schedule
		if b != nil {
			if s, err = decode(b); err != nil {
				log.Error("the stored bandwidth cap is not valid; the one in force stays", "err", err)
				return
			}
		}
		last, loaded = b, true
		c.Set(s)
		if s == nil {
			log.Info("bandwidth cap: none")
		} else {
			rate, _, until := s.InForce(time.Now())
			log.Info("bandwidth cap set", "default", s.Spec().Default, "windows", len(s.Spec().Windows), "now", rate.String(), "until", until)
		}
	}
	load()
	t := time.NewTicker(PollEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		load()
	}
}
