package lab

import (
	"context"
	"flag"
	"fmt"

	"path/filepath"

	"github.com/rehost/rehost/connector/cli"
	"github.com/rehost/rehost/internal/lab/pgpeer"
)

type postgresOptions struct {
	dir, database string
	port          int
	json          bool
}

func postgresFlags(fs *flag.FlagSet) func(context.Context, cli.Env, []string) error {
	o := &postgresOptions{}
	fs.StringVar(&o.dir, "dir", "", "directory of the cluster: data, certificates, password (required; all survive restarts)")
	fs.IntVar(&o.port, "port", 0, "port on 127.0.0.1 (default a free one)")
	fs.StringVar(&o.database, "database", "rehost", "database the store lives in, made if missing")
	fs.BoolVar(&o.json, "json", false, "print the store's URL and files as one JSON line")
	return o.run
}

// postgresInfo is what the verb prints once it serves.
type postgresInfo struct {
	Store        string `json:"store"`
	PasswordFile string `json:"passwordFile"`
	CAFile       string `json:"caFile"`
	Port         int    `json:"port"`
	Dir          string `json:"dir"`
}

func (o *postgresOptions) run(ctx context.Context, env cli.Env, args []string) error {
	if err := noArgs(args); err != nil {
		return err
	}
	if o.dir == "" {
		return fmt.Errorf("--dir is required: %w", cli.ErrUsage)
	}
	dir, err := filepath.Abs(o.dir)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stderr, "rehost-lab postgres: starting PostgreSQL (initdb on the first start) …")
	srv, err := pgpeer.Start(ctx, pgpeer.Options{Dir: dir, Port: o.port})
	if err != nil {
		return fmt.Errorf("start PostgreSQL: %w", err)
	}
	defer srv.Close()
	if err := srv.CreateDatabase(ctx, o.database); err != nil {
		return fmt.Errorf("create database %s: %w", o.database, err)
	}
	info := postgresInfo{Store: srv.URL(o.database), PasswordFile: srv.PasswordFile, CAFile: srv.CAFile, Port: srv.Port, Dir: dir}
	printInfo(env.Stdout, o.json, info, fmt.Sprintf("PostgreSQL serving the fleet's store\n  store          %s\n  password file  %s\n  CA file        %s\nGive each member: rehost serve --store %s --store-password-file %s --store-ca-file %s\nInterrupt to stop.\n",
		info.Store, info.PasswordFile, info.CAFile, info.Store, info.PasswordFile, info.CAFile))
	select {
	case <-ctx.Done():
	case <-srv.Done():
		return fmt.Errorf("PostgreSQL exited; see %s", filepath.Join(dir, "postgres.log"))
	}
	return nil
}
