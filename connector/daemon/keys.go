package daemon

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/rehost/rehost/connector/limit"
	"github.com/rehost/rehost/pkg/store"
)

// AccessKey is an API access key the appliance issued: SigV4 credentials for
// the connector's HTTPS API. The server needs the secret itself to verify a
// signature (an HMAC), so it is kept sealed by the state directory's secret
// box, not hashed.
type AccessKey struct {
	ID   string `json:"accessKeyId"` // "RHK" + 17 base32 characters, 20 in all like AWS's
	Name string `json:"name,omitempty"`
	// ReadOnly keys may call only the operations that change nothing
	// (listings, status, metrics).
	ReadOnly  bool      `json:"readOnly,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	RevokedAt time.Time `json:"revokedAt,omitzero"`
	// Secret is set only in the sealed record and in what CreateAccessKey
	// returns, once.
	Secret string `json:"secretAccessKey,omitempty"`
}

// Revoked reports whether the key was revoked.
func (k AccessKey) Revoked() bool { return !k.RevokedAt.IsZero() }

const (
	settingAccessKeys = "api-access-keys"
	accessKeyLockFile = "api-keys.lock"
)

// ErrNoSuchKey: no access key with that id.
var ErrNoSuchKey = errors.New("no such access key")

// CreateAccessKey issues a new access key. The returned value is the only
// one that carries the secret.
func (d *Daemon) CreateAccessKey(ctx context.Context, name string, readOnly bool) (AccessKey, error) {
	if err := limit.KeyName.Check(name); err != nil {
		return AccessKey{}, fmt.Errorf("create access key: %w", err)
	}
	var idb [11]byte
	var sb [30]byte
	rand.Read(idb[:])
	rand.Read(sb[:])
	k := AccessKey{
		ID:        "RHK" + base32.StdEncoding.EncodeToString(idb[:])[:17],
		Secret:    base64.StdEncoding.EncodeToString(sb[:]),
		Name:      name,
		ReadOnly:  readOnly,
		CreatedAt: time.Now().UTC().Truncate(time.Second),
	}
	err := d.updateAccessKeys(ctx, func(keys []AccessKey) ([]AccessKey, error) {
		return append(keys, k), nil
	})
	if err != nil {
		return AccessKey{}, fmt.Errorf("create access key: %w", err)
	}
	return k, nil
}

// AccessKeys lists the issued keys, revoked ones too, without secrets.
func (d *Daemon) AccessKeys(ctx context.Context) ([]AccessKey, error) {
	keys, err := d.accessKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list access keys: %w", err)
	}
	for i := range keys {
		keys[i].Secret = ""
	}
	return keys, nil
}

// RevokeAccessKey revokes a key; the API refuses it from its next request
// on. Revoking a revoked key is not an error.
func (d *Daemon) RevokeAccessKey(ctx context.Context, id string) (AccessKey, error) {
	var out AccessKey
	err := d.updateAccessKeys(ctx, func(keys []AccessKey) ([]AccessKey, error) {
		i := slices.IndexFunc(keys, func(k AccessKey) bool { return k.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("%w %q: see 'rehost admin key list'", ErrNoSuchKey, id)
		}
		if !keys[i].Revoked() {
			keys[i].RevokedAt = time.Now().UTC().Truncate(time.Second)
		}
		out = keys[i]
		return keys, nil
	})
	if err != nil {
		return AccessKey{}, fmt.Errorf("revoke access key: %w", err)
	}
	out.Secret = ""
	return out, nil
}

// AccessKey returns a key that is not revoked, with its secret, for the API
// to verify a signature; ok is false for an unknown or revoked key. It reads
// the store each time, so a revocation by another process takes effect at
// once.
func (d *Daemon) AccessKey(ctx context.Context, id string) (k AccessKey, ok bool, err error) {
	keys, err := d.accessKeys(ctx)
	if err != nil {
		return AccessKey{}, false, err
	}
	i := slices.IndexFunc(keys, func(k AccessKey) bool { return k.ID == id })
	if i < 0 || keys[i].Revoked() {
		return AccessKey{}, false, nil
	}
	return keys[i], true, nil
}

// accessKeys reads the sealed key list; the last one read is kept parsed,
// so a request costs one store read and a byte comparison.
func (d *Daemon) accessKeys(ctx context.Context) ([]AccessKey, error) {
	sealed, err := d.Store.GetSetting(ctx, settingAccessKeys)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	d.keysMu.Lock()
	defer d.keysMu.Unlock()
	if d.keysSealed == nil || !bytes.Equal(sealed, d.keysSealed) {
		b, err := d.Box.Open(sealed)
		if err != nil {
			return nil, err
		}
		var keys []AccessKey
		if err := json.Unmarshal(b, &keys); err != nil {
			return nil, err
		}
		d.keysSealed, d.keysParsed = sealed, keys
	}
	return slices.Clone(d.keysParsed), nil
}

// updateAccessKeys is a read-modify-write of the key list under a file lock,
// so two CLI processes creating keys at once lose neither; on a fleet's
// store, under a fleet-wide lock too, since other members share the list.
func (d *Daemon) updateAccessKeys(ctx context.Context, fn func([]AccessKey) ([]AccessKey, error)) error {
	if d.StoreConfig.Postgres() {
		unlock, err := d.fleetLock(ctx, "access-keys")
		if err != nil {
			return err
		}
		defer unlock()
	}
	return withFileLock(filepath.Join(d.Dir, accessKeyLockFile), func() error {
		keys, err := d.accessKeys(ctx)
		if err != nil {
			return err
		}
		keys, err = fn(keys)
		if err != nil {
			return err
		}
		b, err := json.Marshal(keys)
		if err != nil {
			return err
		}
		return d.Store.PutSetting(ctx, settingAccessKeys, d.Box.Seal(b))
	})
}

// Secrets returns every secret the state directory holds in plaintext once
// opened (AWS keys, source passwords, API key secrets), for redacting them
// from anything the connector writes out. Values shorter than 4 bytes are
// left out: they cannot be told from ordinary text.
func (d *Daemon) Secrets(ctx context.Context) []string {
	var out []string
	add := func(s string) {
		if len(strings.TrimSpace(s)) >= 4 && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	if s, err := d.Registration(ctx); err == nil {
		add(s.SecretAccessKey)
		add(s.SessionToken)
	}
	if srcs, err := d.Store.ListSources(ctx); err == nil {
		for _, s := range srcs {
			if b, err := d.Box.Open(s.Secret); err == nil {
				add(string(b))
			}
		}
	}
	if keys, err := d.accessKeys(ctx); err == nil {
		for _, k := range keys {
			add(k.Secret)
		}
	}
	return out
}
