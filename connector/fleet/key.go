package fleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rehost/rehost/connector/secret"
	"github.com/rehost/rehost/pkg/store"
)

// settingKeyCheck holds a known text sealed with the fleet's key: a member
// whose key opens it seals and opens the fleet's secrets alike.
const settingKeyCheck = "fleet.key-check"

var keyCheckText = []byte("rehost fleet key check v1")

// ErrForeignKey: this connector's secret key is not the one the fleet's
// secrets are sealed with.
var ErrForeignKey = errors.New("this connector's secret key is not the fleet's")

// CheckKey makes sure box holds the fleet's key. The first member to look
// provisions the check with its own key; every later one must open it.
func CheckKey(ctx context.Context, st Store, box *secret.Box, who string) error {
	for range 3 {
		sealed, err := st.GetSetting(ctx, settingKeyCheck)
		if err == nil {
			if pt, err := box.Open(sealed); err != nil || !bytes.Equal(pt, keyCheckText) {
				return fmt.Errorf("%w: give this connector the fleet's key with 'rehost fleet join --from https://MEMBER' (a member of the fleet), then start it again", ErrForeignKey)
			}
			return nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("check the fleet's key: %w", err)
		}
		// One member provisions: the others read what it wrote.
		got, err := st.TryLock(ctx, "provision-key", who, time.Minute)
		if err != nil {
			return fmt.Errorf("provision the fleet's key: %w", err)
		}
		if got {
			if _, err := st.GetSetting(ctx, settingKeyCheck); errors.Is(err, store.ErrNotFound) {
				if err := st.PutSetting(ctx, settingKeyCheck, box.Seal(keyCheckText)); err != nil {
					return fmt.Errorf("provision the fleet's key: %w", err)
				}
			}
			continue
		}
		time.Sleep(time.Second)
	}
	return errors.New("check the fleet's key: another member is provisioning it; start again")
}
