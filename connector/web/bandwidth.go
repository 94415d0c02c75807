package web

import (
	"net/http"
	"strings"

	"github.com/rehost/rehost/connector/api"
	"github.com/rehost/rehost/connector/bandwidth"
)

// The bandwidth cap's page: the cap in force with the live throughput,
// and the form that sets it (SetBandwidthCap validates it, as for the CLI
// and the API).

func (c *Console) bandwidthPage(w http.ResponseWriter, r *http.Request, rq *request) error {
	b, err := c.svc.GetBandwidthCap(r.Context(), &api.GetBandwidthCapInput{})
	if err != nil {
		return err
	}
	if rq.form == nil {
		rq.form = newForm(nil)
		rq.form.Values.Set("default", b.Default)
		rq.form.Values.Set("zone", b.Zone)
		var lines []string
		for _, win := range b.Windows {
			lines = append(lines, win.Days+" "+win.Start+"-"+win.End+" "+win.Rate)
		}
		rq.form.Values.Set("windows", strings.Join(lines, "\n"))
	}
	return c.bandwidthView(w, r, rq, http.StatusOK, b)
}

func (c *Console) bandwidthView(w http.ResponseWriter, r *http.Request, rq *request, status int, b *api.BandwidthCap) error {
	v := &view{Title: "Bandwidth cap", Nav: "overview"}
	return c.render(w, r, rq, status, v, bandwidthPage(v, b))
}

func (c *Console) bandwidthSubmit(w http.ResponseWriter, r *http.Request, rq *request) error {
	f := rq.form
	in := &api.SetBandwidthCapInput{Spec: bandwidth.Spec{Default: f.Get("default"), Zone: f.Get("zone")}}
	for line := range strings.SplitSeq(f.Get("windows"), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		win, err := bandwidth.ParseWindow(line)
		if err != nil {
			f.fail("windows", err.Error())
			break
		}
		in.Windows = append(in.Windows, win)
	}
	if f.ok() {
		_, err := c.svc.SetBandwidthCap(r.Context(), in)
		if err == nil {
			c.log.Info("console: bandwidth cap set", "remote", remoteIP(r))
			return c.flashTo(w, r, rq, "/bandwidth", flash{Kind: "ok", Message: "The bandwidth cap is saved: every run follows it within seconds."})
		}
		var ae *api.Error
		if !asAPIError(err, &ae) {
			return err
		}
		f.apiError(err, map[string]string{"default rate": "default", "time zone": "zone", "window": "windows"})
	}
	b, err := c.svc.GetBandwidthCap(r.Context(), &api.GetBandwidthCapInput{})
	if err != nil {
		return err
	}
	return c.bandwidthView(w, r, rq, http.StatusUnprocessableEntity, b)
}

// rateText is bytes per second written as rates are (bits per second).
func rateText(bytesPerSecond float64) string {
	if bytesPerSecond < 1 {
		return "0 bit/s"
	}
	return bandwidth.Rate(bytesPerSecond).String()
}

// capNow is the cap in force, with its window and end.
func capNow(b *api.BandwidthCap) string {
	s := b.Rate
	if b.RateBytesPerSecond == 0 {
		s = "no cap"
	}
	if b.Window > 0 {
		w := b.Windows[b.Window-1]
		s += " (" + w.Days + " " + w.Start + "-" + w.End + ")"
	}
	return s
}
