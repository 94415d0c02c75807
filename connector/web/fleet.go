package web

import (
	"net/http"
	"slices"

	"github.com/rehost/rehost/connector/api"
)

// fleetView is the fleet's page: nil Status on a connector on its own.
type fleetView struct {
	Status *api.FleetStatus
	// Alone says why there is no fleet (the API's words).
	Alone string
}

func (c *Console) fleetPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	d := fleetView{}
	st, err := c.svc.GetFleetStatus(r.Context(), &api.GetFleetStatusInput{})
	var ae *api.Error
	switch {
	case err == nil:
		d.Status = st
	case asAPIError(err, &ae) && ae.Type == api.ErrOperationNotPermitted:
		d.Alone = ae.Message
	default:
		return err
	}
	v := &view{Title: "Fleet", Nav: "fleet", Refresh: refreshIf(st != nil)}
	return c.render(w, r, rq, http.StatusOK, v, fleetPage(v, d))
}

func (c *Console) findMember(r *http.Request) (api.FleetMember, error) {
	st, err := c.svc.GetFleetStatus(r.Context(), &api.GetFleetStatusInput{})
	if err != nil {
		return api.FleetMember{}, err
	}
	id := r.PathValue("id")
	i := slices.IndexFunc(st.Members, func(m api.FleetMember) bool { return m.ConnectorID == id })
	if i < 0 {
		return api.FleetMember{}, &api.Error{Type: "NotFound", Message: "no connector " + id + " in the fleet: it may have been removed", Status: http.StatusNotFound}
	}
	return st.Members[i], nil
}

func (c *Console) memberRemovePage(w http.ResponseWriter, r *http.Request, rq *request) error {
	m, err := c.findMember(r)
	if err != nil {
		return err
	}
	v := &view{Title: "Remove connector " + m.ConnectorID, Nav: "fleet"}
	return c.render(w, r, rq, http.StatusOK, v, memberRemovePage(v, m))
}

func (c *Console) memberRemove(w http.ResponseWriter, r *http.Request, rq *request) error {
	m, err := c.findMember(r)
	if err != nil {
		return err
	}
	if _, err := c.svc.DisassociateConnector(r.Context(), &api.DisassociateConnectorInput{ConnectorID: m.ConnectorID}); err != nil {
		return err
	}
	c.log.Warn("console: connector removed from the fleet", "removed", m.ConnectorID)
	return c.flashTo(w, r, rq, "/fleet", flash{Kind: "ok",
		Message: "Removed connector " + m.ConnectorID + " from the fleet: its leases ended, the other members resume its runs, and it stops at its next heartbeat."})
}
