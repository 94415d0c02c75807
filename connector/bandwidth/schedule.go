package bandwidth

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Spec is the cap as users write it and the store keeps it: a default
// rate and weekly windows, each with its own rate. Compile validates it
// and writes it in canonical form.
type Spec struct {
	// Default is the rate outside every window: a rate (ParseRate) or
	// "unlimited" (also when empty).
	Default string `json:"default"`
	// Zone is the IANA time zone the windows' times are in ("Europe/Paris");
	// empty is the connector's local zone.
	Zone    string       `json:"zone,omitempty"`
	Windows []WindowSpec `json:"windows,omitempty"`
}

// WindowSpec is one weekly window: on Days, from Start to End (an End
// before Start runs past midnight into the next day), at Rate.
type WindowSpec struct {
	// Days are day names or ranges, comma-separated: "Mon-Fri",
	// "Sat,Sun", "daily".
	Days string `json:"days"`
	// Start and End are HH:MM, 24-hour; End may be 24:00.
	Start string `json:"start"`
	End   string `json:"end"`
	Rate  string `json:"rate"`
}

func (w WindowSpec) String() string {
	return fmt.Sprintf("%s %s-%s %s", w.Days, w.Start, w.End, w.Rate)
}

// WindowGrammar is how a window is written in one string (ParseWindow).
const WindowGrammar = `"DAYS HH:MM-HH:MM RATE", e.g. "Mon-Fri 08:00-18:00 20Mbit" (DAYS: Mon…Sun, ranges and commas, or daily; an end before the start runs past midnight; 24:00 is the end of the day)`

// ParseWindow reads a window written as one string (the CLI's --window).
func ParseWindow(s string) (WindowSpec, error) {
	f := strings.Fields(s)
	if len(f) < 3 {
		return WindowSpec{}, fmt.Errorf("window %q: write it as %s", s, WindowGrammar)
	}
	start, end, ok := strings.Cut(f[1], "-")
	if !ok {
		return WindowSpec{}, fmt.Errorf("window %q: %q is not HH:MM-HH:MM: write it as %s", s, f[1], WindowGrammar)
	}
	return WindowSpec{Days: f[0], Start: start, End: end, Rate: strings.Join(f[2:], "")}, nil
}

// Schedule is a compiled Spec: what rate is in force when.
type Schedule struct {
	spec     Spec // canonical
	loc      *time.Location
	def      Rate
	windows  []window
	minuteOf func(time.Time) int
}

type window struct {
	days       [7]bool // by time.Weekday
	start, end int     // minutes of the day; end <= start runs past midnight
	rate       Rate
}

const (
	day  = 24 * 60
	week = 7 * day
)

// spans are the window's minutes of the week, [from, to) with from < to
// and both within the week (one crossing Sunday midnight is cut in two).
func (w window) spans() [][2]int {
	var out [][2]int
	length := w.end - w.start
	if length <= 0 {
		length += day
	}
	for d, on := range w.days {
		if !on {
			continue
		}
		from := d*day + w.start
		to := from + length
		if to <= week {
			out = append(out, [2]int{from, to})
		} else {
			out = append(out, [2]int{from, week}, [2]int{0, to - week})
		}
	}
	return out
}

// Compile validates spec: rates (ParseRate), the zone, each window's days
// and times, and that no two windows overlap. Its errors name the field
// and the window and say what to write.
func Compile(spec Spec) (*Schedule, error) {
	s := &Schedule{}
	def, err := ParseRate(cmp.Or(strings.TrimSpace(spec.Default), Unlimited))
	if err != nil {
		return nil, fmt.Errorf("%w: default rate: %v", errInvalid, err)
	}
	s.def = def
	s.spec.Default = def.String()
	s.loc = time.Local
	if z := strings.TrimSpace(spec.Zone); z != "" {
		loc, err := time.LoadLocation(z)
		if err != nil || z == "Local" {
			return nil, fmt.Errorf("%w: time zone %q is not one this connector knows: give an IANA name such as Europe/Paris or America/New_York, or none for the connector's local zone", errInvalid, z)
		}
		s.loc, s.spec.Zone = loc, z
	}
	for i, ws := range spec.Windows {
		w, canon, err := compileWindow(ws)
		if err != nil {
			return nil, fmt.Errorf("%w: window %d (%s): %v", errInvalid, i+1, ws, err)
		}
		for j, prev := range s.windows {
			if at, ok := overlap(prev, w); ok {
				return nil, fmt.Errorf("%w: windows %d (%s) and %d (%s) overlap at %s: each minute of the week takes one rate; shorten one of them",
					errInvalid, j+1, s.spec.Windows[j], i+1, canon, minuteName(at))
			}
		}
		s.windows = append(s.windows, w)
		s.spec.Windows = append(s.spec.Windows, canon)
	}
	return s, nil
}

func compileWindow(ws WindowSpec) (window, WindowSpec, error) {
	var w window
	days, err := parseDays(ws.Days)
	if err != nil {
		return w, ws, err
	}
	w.days = days
	if w.start, err = parseClock(ws.Start, false); err != nil {
		return w, ws, fmt.Errorf("start: %v", err)
	}
	if w.end, err = parseClock(ws.End, true); err != nil {
		return w, ws, fmt.Errorf("end: %v", err)
	}
	if w.start == w.end {
		return w, ws, fmt.Errorf("it starts and ends at %s: give a window of at least a minute (00:00-24:00 is the whole day)", ws.Start)
	}
	if w.rate, err = ParseRate(ws.Rate); err != nil {
		return w, ws, err
	}
	canon := WindowSpec{Days: formatDays(days), Start: formatClock(w.start), End: formatClock(w.end), Rate: w.rate.String()}
	return w, canon, nil
}

// overlap returns the first minute of the week a and b share.
func overlap(a, b window) (int, bool) {
	first, found := 0, false
	for _, x := range a.spans() {
		for _, y := range b.spans() {
			if from := max(x[0], y[0]); from < min(x[1], y[1]) && (!found || from < first) {
				first, found = from, true
			}
		}
	}
	return first, found
}

var dayNames = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}

func minuteName(m int) string {
	return dayNames[m/day] + " " + formatClock(m%day)
}

func parseDay(s string) (int, bool) {
	for i, n := range dayNames {
		if len(s) >= 3 && strings.EqualFold(s[:3], n) && (len(s) == 3 || strings.EqualFold(s, time.Weekday(i).String())) {
			return i, true
		}
	}
	return 0, false
}

func parseDays(s string) ([7]bool, error) {
	var days [7]bool
	if t := strings.TrimSpace(s); strings.EqualFold(t, "daily") || t == "*" {
		return [7]bool{true, true, true, true, true, true, true}, nil
	}
	if strings.TrimSpace(s) == "" {
		return days, fmt.Errorf("no days given: write Mon-Fri, Sat,Sun or daily")
	}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		a, b, isRange := strings.Cut(part, "-")
		from, ok1 := parseDay(a)
		to, ok2 := from, true
		if isRange {
			to, ok2 = parseDay(b)
		}
		if !ok1 || !ok2 {
			return days, fmt.Errorf("days %q: %q is not a day or a range of days: write Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges such as Mon-Fri, or daily", s, part)
		}
		for d := from; ; d = (d + 1) % 7 {
			days[d] = true
			if d == to {
				break
			}
		}
	}
	return days, nil
}

// formatDays writes days Monday first, runs of two or more as ranges.
func formatDays(days [7]bool) string {
	if !slices.Contains(days[:], false) {
		return "daily"
	}
	order := []int{1, 2, 3, 4, 5, 6, 0}
	var parts []string
	for i := 0; i < len(order); i++ {
		if !days[order[i]] {
			continue
		}
		j := i
		for j+1 < len(order) && days[order[j+1]] {
			j++
		}
		if j > i {
			parts = append(parts, dayNames[order[i]]+"-"+dayNames[order[j]])
		} else {
			parts = append(parts, dayNames[order[i]])
		}
		i = j
	}
	return strings.Join(parts, ",")
}

func parseClock(s string, end bool) (int, error) {
	h, m, ok := strings.Cut(strings.TrimSpace(s), ":")
	hh, err1 := strconv.Atoi(h)
	mm, err2 := strconv.Atoi(m)
	if !ok || err1 != nil || err2 != nil || len(m) != 2 || hh < 0 || mm < 0 || mm > 59 || hh > 24 || hh == 24 && (mm != 0 || !end) {
		if end {
			return 0, fmt.Errorf("%q is not a time of day: write HH:MM, 00:00 to 24:00", s)
		}
		return 0, fmt.Errorf("%q is not a time of day: write HH:MM, 00:00 to 23:59", s)
	}
	return hh*60 + mm, nil
}

func formatClock(m int) string { return fmt.Sprintf("%02d:%02d", m/60, m%60) }

// Spec is the schedule in canonical form: rates as String writes them,
// days Monday first, times HH:MM.
func (s *Schedule) Spec() Spec { return s.spec }

// Location is the zone the windows are read in.
func (s *Schedule) Location() *time.Location { return s.loc }

// InForce is the cap at t: its rate (0: none), the window it comes from
// (its index in Spec().Windows, -1 for the default), and when it next
// changes (zero if it never does).
func (s *Schedule) InForce(t time.Time) (rate Rate, windowIndex int, until time.Time) {
	if s == nil {
		return 0, -1, time.Time{}
	}
	lt := t.In(s.loc)
	mow := int(lt.Weekday())*day + lt.Hour()*60 + lt.Minute()
	rate, windowIndex = s.def, -1
	next := -1 // minutes from the start of this minute to the next edge
	for i, w := range s.windows {
		for _, sp := range w.spans() {
			if sp[0] <= mow && mow < sp[1] {
				rate, windowIndex = w.rate, i
			}
			for _, edge := range sp {
				d := (edge - mow + week) % week
				if d == 0 {
					d = week
				}
				if next < 0 || d < next {
					next = d
				}
			}
		}
	}
	if next < 0 {
		return rate, windowIndex, time.Time{}
	}
	// The edge as a wall-clock time in the zone (time.Date normalises
	// across months and daylight-saving changes).
	m := lt.Hour()*60 + lt.Minute() + next
	until = time.Date(lt.Year(), lt.Month(), lt.Day(), 0, m, 0, 0, s.loc)
	if !until.After(t) { // a wall-clock time a DST change skipped
		until = t.Add(time.Minute)
	}
	return rate, windowIndex, until
}
