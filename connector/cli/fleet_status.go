package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rehost/rehost/connector/api"
)

func init() {
	Register(Command{
		Name:    "fleet status",
		Usage:   "[--json]",
		Summary: "list the fleet's connectors with their health, load and sources, which one schedules, and the runs' leases",
		Flags: reader[*api.FleetStatus]{
			get: func(ctx context.Context, svc api.Service, _ []string) (*api.FleetStatus, error) {
				return svc.GetFleetStatus(ctx, &api.GetFleetStatusInput{})
			},
			text: func(env Env, st *api.FleetStatus) { printFleet(env, st, time.Now()) },
		}.flags,
	})
}

func printFleet(env Env, st *api.FleetStatus, now time.Time) {
	w := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "CONNECTOR\tSTATUS\tRUNS\tVERSION\tIP\tHEARTBEAT\tSOURCES")
	for _, m := range st.Members {
		id := m.ConnectorID
		if m.Leader {
			id += " (schedules)"
		}
		fmt.Fprintf(w, "%s\t%s\t%d/%d\t%s\t%s\t%s ago\t%s\n", id, m.Status, m.RunsInFlight, m.Capacity, m.Version, m.IPAddress,
			now.Sub(m.LastHeartbeat.Time).Round(time.Second), strings.Join(m.Sources, ", "))
	}
	w.Flush()
	if len(st.Members) == 0 {
		fmt.Fprintln(env.Stdout, "no connector has joined the fleet yet")
	}
	fmt.Fprintf(env.Stdout, "\nleases (TTL %s):\n", time.Duration(st.LeaseTTLSeconds*float64(time.Second)))
	if len(st.Leases) == 0 {
		fmt.Fprintln(env.Stdout, "  none: no run in flight")
		return
	}
	w = tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "RUN\tJOB\tCONNECTOR\tTOKEN\tSTATE\tSTAGE\tEXPIRES")
	for _, l := range st.Leases {
		exp := "in " + l.Expires.Sub(now).Round(time.Second).String()
		if l.Expired {
			exp = "EXPIRED " + now.Sub(l.Expires.Time).Round(time.Second).String() + " ago"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", l.ReplicationRunID, l.ReplicationJobID, l.ConnectorID, l.Token, l.State, l.Stage, exp)
	}
	w.Flush()
}
