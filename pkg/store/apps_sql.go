package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Apps keep their nested configuration as JSON text (server groups, tags,
// the launch and replication configurations), the store's usual way with
// what only the connector interprets; app_servers indexes group membership
// so that "a server belongs to one app" is a primary key, not a read before
// a write.

const appCols = `app_id, name, description, role_name, server_groups, tags, launch_config, replication_config,
	replication_stopped, created_at, updated_at`

func scanApp(r scanner) (App, error) {
	var a App
	var groups, tags, launch, repl string
	var stopped int
	var created, updated sql.NullInt64
	if err := r.Scan(&a.AppID, &a.Name, &a.Description, &a.RoleName, &groups, &tags, &launch, &repl,
		&stopped, &created, &updated); err != nil {
		return App{}, err
	}
	for _, f := range []struct {
		text string
		v    any
	}{{groups, &a.Groups}, {tags, &a.Tags}, {launch, &a.Launch}, {repl, &a.Replication}} {
		if f.text == "" {
			continue
		}
		if err := json.Unmarshal([]byte(f.text), f.v); err != nil {
			return App{}, fmt.Errorf("app %s: %w", a.AppID, err)
		}
	}
	if a.Groups == nil {
		a.Groups = []ServerGroup{}
	}
	a.ReplicationStopped = stopped != 0
	a.CreatedAt, a.UpdatedAt = timeOf(created), timeOf(updated)
	return a, nil
}

// jsonText is v as JSON text, "" for a nil pointer.
func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil || string(b) == "null" {
		return ""
	}
	return string(b)
}

// checkApp validates a, fills in missing group ids, and checks that its
// servers exist.
func (s *sqlStore) checkApp(ctx context.Context, q querier, a *App) error {
	if strings.TrimSpace(a.Name) == "" {
		return fmt.Errorf("%w: app name is empty", ErrInvalid)
	}
	if a.Groups == nil {
		a.Groups = []ServerGroup{}
	}
	groups := map[string]bool{}
	servers := map[string]string{}
	for i := range a.Groups {
		g := &a.Groups[i]
		if g.GroupID == "" {
			g.GroupID = newID(prefixGroup)
		}
		if groups[g.GroupID] {
			return fmt.Errorf("%w: server group %s is listed twice", ErrInvalid, g.GroupID)
		}
		groups[g.GroupID] = true
		if g.ServerIDs == nil {
			g.ServerIDs = []string{}
		}
		for _, id := range g.ServerIDs {
			if other, dup := servers[id]; dup {
				return fmt.Errorf("%w: server %s is in server groups %q and %q: a server belongs to one group", ErrInvalid, id, groupName(a, other), groupName(a, g.GroupID))
			}
			servers[id] = g.GroupID
			if _, err := s.getServer(ctx, q, id); err != nil {
				return err
			}
		}
	}
	for _, t := range a.Tags {
		if t.Key == "" {
			return fmt.Errorf("%w: app %q: a tag has an empty key", ErrInvalid, a.Name)
		}
	}
	return nil
}

func groupName(a *App, id string) string {
	for _, g := range a.Groups {
		if g.GroupID == id && g.Name != "" {
			return g.Name
		}
	}
	return id
}

// writeMembers replaces the app's rows in app_servers; a server of another
// app is a conflict naming that app.
func (s *sqlStore) writeMembers(ctx context.Context, tx *sql.Tx, a App) error {
	if _, err := s.exec(ctx, tx, `DELETE FROM app_servers WHERE app_id = ?`, a.AppID); err != nil {
		return err
	}
	for _, g := range a.Groups {
		for _, id := range g.ServerIDs {
			// Looked up before the insert: on PostgreSQL a refused
			// statement ends the transaction.
			var other string
			err := s.queryRow(ctx, tx, `SELECT app_id FROM app_servers WHERE server_id = ?`, id).Scan(&other)
			if err == nil {
				return fmt.Errorf("%w: server %s already belongs to app %s: a server belongs to one app", ErrConflict, id, other)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
			_, err = s.exec(ctx, tx, `INSERT INTO app_servers (server_id, app_id, group_id) VALUES (?, ?, ?)`, id, a.AppID, g.GroupID)
			if err != nil && s.d.classify(err) == uniqueViolation {
				return fmt.Errorf("%w: server %s already belongs to another app: a server belongs to one app", ErrConflict, id)
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *sqlStore) CreateApp(ctx context.Context, a App) (App, error) {
	a.AppID = newID(prefixApp)
	now := s.now()
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	a.UpdatedAt = now
	a.Groups = slices.Clone(a.Groups)
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if err := s.checkApp(ctx, tx, &a); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO apps (`+appCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			a.AppID, a.Name, a.Description, a.RoleName, jsonText(a.Groups), jsonText(a.Tags), jsonText(a.Launch),
			jsonText(a.Replication), boolArg(a.ReplicationStopped), timeArg(a.CreatedAt), timeArg(a.UpdatedAt))
		if err != nil && s.d.classify(err) == uniqueViolation {
			return fmt.Errorf("%w: an app named %q exists", ErrConflict, a.Name)
		}
		if err != nil {
			return err
		}
		return s.writeMembers(ctx, tx, a)
	})
	if err != nil {
		return App{}, fmt.Errorf("create app %q: %w", a.Name, err)
	}
	return a, nil
}

func (s *sqlStore) getApp(ctx context.Context, q querier, id string) (App, error) {
	a, err := scanApp(s.queryRow(ctx, q, `SELECT `+appCols+` FROM apps WHERE app_id = ?`, id))
	if err != nil {
		return App{}, notFound(err, "app "+id)
	}
	return a, nil
}

func (s *sqlStore) GetApp(ctx context.Context, id string) (App, error) {
	return s.getApp(ctx, s.db, id)
}

func (s *sqlStore) ListApps(ctx context.Context) ([]App, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+appCols+` FROM apps ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	return collect(rows, scanApp, "list apps")
}

func (s *sqlStore) AppOfServer(ctx context.Context, serverID string) (App, error) {
	var id string
	if err := s.queryRow(ctx, s.db, `SELECT app_id FROM app_servers WHERE server_id = ?`, serverID).Scan(&id); err != nil {
		return App{}, notFound(err, "app of server "+serverID)
	}
	return s.getApp(ctx, s.db, id)
}

func (s *sqlStore) UpdateApp(ctx context.Context, id string, fn func(*App) error) (App, error) {
	var out App
	err := s.tx(ctx, func(tx *sql.Tx) error {
		a, err := s.getApp(ctx, tx, id)
		if err != nil {
			return err
		}
		created := a.CreatedAt
		if err := fn(&a); err != nil {
			return err
		}
		a.AppID, a.CreatedAt, a.UpdatedAt = id, created, s.now()
		if err := s.checkApp(ctx, tx, &a); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `UPDATE apps SET name = ?, description = ?, role_name = ?, server_groups = ?, tags = ?,
			launch_config = ?, replication_config = ?, replication_stopped = ?, updated_at = ? WHERE app_id = ?`,
			a.Name, a.Description, a.RoleName, jsonText(a.Groups), jsonText(a.Tags), jsonText(a.Launch),
			jsonText(a.Replication), boolArg(a.ReplicationStopped), timeArg(a.UpdatedAt), id)
		if err != nil && s.d.classify(err) == uniqueViolation {
			return fmt.Errorf("%w: an app named %q exists", ErrConflict, a.Name)
		}
		if err != nil {
			return err
		}
		out = a
		return s.writeMembers(ctx, tx, a)
	})
	if err != nil {
		return App{}, fmt.Errorf("update app %s: %w", id, err)
	}
	return out, nil
}

func (s *sqlStore) DeleteApp(ctx context.Context, id string) error {
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.getApp(ctx, tx, id); err != nil {
			return err
		}
		var live, state string
		err := s.queryRow(ctx, tx, `SELECT launch_id, state FROM app_launches WHERE app_id = ? AND state <> ?`, id, LaunchTerminated).Scan(&live, &state)
		if err == nil {
			return fmt.Errorf("%w: launch %s is %s: terminate it first", ErrConflict, live, state)
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		for _, q := range []string{`DELETE FROM app_launches WHERE app_id = ?`, `DELETE FROM app_servers WHERE app_id = ?`, `DELETE FROM apps WHERE app_id = ?`} {
			if _, err := s.exec(ctx, tx, q, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete app %s: %w", id, err)
	}
	return nil
}

// --- launches ---

const launchCols = `launch_id, app_id, kind, state, stack_name, stack_id, stack_status, status_message, template,
	parameters, servers, launched_at, created_at, updated_at`

func scanLaunch(r scanner) (Launch, error) {
	var l Launch
	var params, servers string
	var launched, created, updated sql.NullInt64
	if err := r.Scan(&l.LaunchID, &l.AppID, &l.Kind, &l.State, &l.StackName, &l.StackID, &l.StackStatus, &l.StatusMessage,
		&l.Template, &params, &servers, &launched, &created, &updated); err != nil {
		return Launch{}, err
	}
	if params != "" {
		if err := json.Unmarshal([]byte(params), &l.Parameters); err != nil {
			return Launch{}, fmt.Errorf("launch %s: %w", l.LaunchID, err)
		}
	}
	if servers != "" {
		if err := json.Unmarshal([]byte(servers), &l.Servers); err != nil {
			return Launch{}, fmt.Errorf("launch %s: %w", l.LaunchID, err)
		}
	}
	l.LaunchedAt, l.CreatedAt, l.UpdatedAt = timeOf(launched), timeOf(created), timeOf(updated)
	return l, nil
}

// liveConflict is the conflict of a live launch l with another live launch
// of its kind, named; nil when there is none. It is asked before the write:
// on PostgreSQL a failed statement ends the transaction, so nothing could
// be looked up after the unique index refused it.
func (s *sqlStore) liveConflict(ctx context.Context, q querier, l Launch) error {
	if l.State == LaunchTerminated {
		return nil
	}
	var other string
	err := s.queryRow(ctx, q, `SELECT launch_id FROM app_launches WHERE app_id = ? AND kind = ? AND state <> ? AND launch_id <> ?`,
		l.AppID, l.Kind, LaunchTerminated, l.LaunchID).Scan(&other)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: app %s already has %s launch %s: terminate it first", ErrConflict, l.AppID, l.Kind, other)
}

// errLiveRace is a live launch the unique index refused after liveConflict
// found none: another writer's, committed in between.
func errLiveRace(l Launch) error {
	return fmt.Errorf("%w: app %s already has a live %s launch: terminate it first", ErrConflict, l.AppID, l.Kind)
}

func (s *sqlStore) CreateLaunch(ctx context.Context, l Launch) (Launch, error) {
	l.LaunchID = newID(prefixLaunch)
	if l.State == "" {
		l.State = LaunchPending
	}
	now := s.now()
	l.CreatedAt, l.UpdatedAt = now, now
	if err := validateLaunch(l); err != nil {
		return Launch{}, fmt.Errorf("create launch: %w", err)
	}
	err := s.tx(ctx, func(tx *sql.Tx) error {
		if _, err := s.getApp(ctx, tx, l.AppID); err != nil {
			return err
		}
		if err := s.liveConflict(ctx, tx, l); err != nil {
			return err
		}
		_, err := s.exec(ctx, tx, `INSERT INTO app_launches (`+launchCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			l.LaunchID, l.AppID, l.Kind, l.State, l.StackName, l.StackID, l.StackStatus, l.StatusMessage, l.Template,
			jsonText(l.Parameters), jsonText(l.Servers), timeArg(l.LaunchedAt), timeArg(l.CreatedAt), timeArg(l.UpdatedAt))
		if err != nil && s.d.classify(err) == uniqueViolation {
			return errLiveRace(l)
		}
		return err
	})
	if err != nil {
		return Launch{}, fmt.Errorf("create %s launch of app %s: %w", l.Kind, l.AppID, err)
	}
	return l, nil
}

func (s *sqlStore) getLaunch(ctx context.Context, q querier, id string) (Launch, error) {
	l, err := scanLaunch(s.queryRow(ctx, q, `SELECT `+launchCols+` FROM app_launches WHERE launch_id = ?`, id))
	if err != nil {
		return Launch{}, notFound(err, "launch "+id)
	}
	return l, nil
}

func (s *sqlStore) GetLaunch(ctx context.Context, id string) (Launch, error) {
	return s.getLaunch(ctx, s.db, id)
}

func (s *sqlStore) ListLaunches(ctx context.Context, appID string) ([]Launch, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+launchCols+` FROM app_launches WHERE app_id = ? ORDER BY created_at DESC, launch_id DESC`, appID)
	if err != nil {
		return nil, fmt.Errorf("list launches of app %s: %w", appID, err)
	}
	return collect(rows, scanLaunch, "list launches of app "+appID)
}

func (s *sqlStore) LiveLaunches(ctx context.Context) ([]Launch, error) {
	rows, err := s.query(ctx, s.db, `SELECT `+launchCols+` FROM app_launches WHERE state <> ? ORDER BY created_at, launch_id`, LaunchTerminated)
	if err != nil {
		return nil, fmt.Errorf("list live launches: %w", err)
	}
	return collect(rows, scanLaunch, "list live launches")
}

func (s *sqlStore) UpdateLaunch(ctx context.Context, id string, fn func(*Launch) error) (Launch, error) {
	var out Launch
	err := s.tx(ctx, func(tx *sql.Tx) error {
		l, err := s.getLaunch(ctx, tx, id)
		if err != nil {
			return err
		}
		keep := l
		if err := fn(&l); err != nil {
			return err
		}
		l.LaunchID, l.AppID, l.Kind, l.CreatedAt, l.UpdatedAt = keep.LaunchID, keep.AppID, keep.Kind, keep.CreatedAt, s.now()
		if err := validateLaunch(l); err != nil {
			return err
		}
		if err := s.liveConflict(ctx, tx, l); err != nil {
			return err
		}
		_, err = s.exec(ctx, tx, `UPDATE app_launches SET state = ?, stack_name = ?, stack_id = ?, stack_status = ?, status_message = ?,
			template = ?, parameters = ?, servers = ?, launched_at = ?, updated_at = ? WHERE launch_id = ?`,
			l.State, l.StackName, l.StackID, l.StackStatus, l.StatusMessage, l.Template, jsonText(l.Parameters),
			jsonText(l.Servers), timeArg(l.LaunchedAt), timeArg(l.UpdatedAt), id)
		if err != nil && s.d.classify(err) == uniqueViolation {
			return errLiveRace(l)
		}
		out = l
		return err
	})
	if err != nil {
		return Launch{}, fmt.Errorf("update launch %s: %w", id, err)
	}
	return out, nil
}
