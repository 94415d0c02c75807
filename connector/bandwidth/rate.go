// Package bandwidth is the connector's bandwidth cap: one budget of bytes
// per second that every run in flight draws from, on the S3 staging path
// and the EBS direct block writer alike, with an optional rate per weekly
// time window (business hours slower, nights faster).
//
// A Spec is the cap as users write it and as the store keeps it; Compile
// is the one place it is validated (the API's service calls it for the
// CLI, the HTTP API and the console). A Cap is the limiter the engine
// waits on; the daemon keeps it current from the store (Watch), so every
// member of a fleet applies the same cap, each to its own traffic.
package bandwidth

import (
	"errors"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// Rate is bytes per second; 0 means no cap.
type Rate int64

// The bounds of a cap. Below MinRate one 512 KiB EBS block would take
// more than a minute; above MaxRate a cap caps nothing an appliance sends.
const (
	MinRate Rate = 8_000             // 64 kbit/s
	MaxRate Rate = 1_000_000_000_000 // 8 Tbit/s
)

// Unlimited is how a rate of no cap is written.
const Unlimited = "unlimited"

// units are the rate units, by their name without "/s" or "ps", with
// their size in bits. Bits and SI prefixes are what network engineers
// write (Mbit, Gbit); bytes with SI (MB) or binary (MiB) prefixes are
// accepted too.
var units = map[string]int64{
	"bit": 1, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
	"B": 8, "kB": 8e3, "KB": 8e3, "MB": 8e6, "GB": 8e9, "TB": 8e12,
	"KiB": 8 << 10, "MiB": 8 << 20, "GiB": 8 << 30, "TiB": 8 << 40,
}

// RateGrammar is the grammar ParseRate takes, for usage and errors.
const RateGrammar = `a number and a unit: bit, kbit, Mbit, Gbit, Tbit (bits, SI prefixes), B, kB, MB, GB, TB (bytes, SI) or KiB, MiB, GiB, TiB (bytes, binary), optionally followed by "/s" or "ps"; or "unlimited"`

// ParseRate reads a rate such as "50Mbit", "1 Gbit/s", "10MB/s", "800kbps"
// or "unlimited" (0). Bit units are case-insensitive ("mbit" is a
// megabit, as tc has it); byte units are not, and a bare "b" is refused as
// ambiguous.
func ParseRate(s string) (Rate, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, Unlimited) || strings.EqualFold(t, "none") || strings.EqualFold(t, "off") {
		return 0, nil
	}
	if t == "" {
		return 0, fmt.Errorf("no rate given: write %s", RateGrammar)
	}
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' && r != '-' && r != '+' })
	if i == 0 {
		return 0, fmt.Errorf("rate %q does not start with a number: write %s", s, RateGrammar)
	}
	if i < 0 {
		return 0, fmt.Errorf("rate %q has no unit: write e.g. %sMbit (megabits per second) or %sMB/s (megabytes)", s, t, t)
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	unit = strings.TrimSuffix(unit, "/s")
	switch low := strings.ToLower(unit); {
	case strings.HasSuffix(unit, "Bps"): // MBps: megabytes
		unit = strings.TrimSuffix(unit, "ps")
	case strings.HasSuffix(low, "bps"): // Mbps: megabits
		unit = unit[:len(unit)-3] + "bit"
	case strings.HasSuffix(low, "bits"):
		unit = strings.TrimSuffix(unit, "s")
	}
	bits, ok := units[unit]
	if !ok {
		bits, ok = units[strings.ToLower(unit)]
		ok = ok && strings.HasSuffix(strings.ToLower(unit), "bit")
	}
	if !ok {
		if strings.HasSuffix(unit, "b") {
			return 0, fmt.Errorf("rate %q: unit %q is ambiguous: write %sbit for bits or %sB for bytes", s, unit, strings.TrimSuffix(unit, "b"), strings.TrimSuffix(unit, "b"))
		}
		return 0, fmt.Errorf("rate %q: unknown unit %q: write %s", s, unit, RateGrammar)
	}
	n, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("rate %q: %q is not a number", s, num)
	}
	if n.Sign() <= 0 {
		return 0, fmt.Errorf("rate %q is not positive: a cap must be above 0 (write %q for no cap)", s, Unlimited)
	}
	// bytes/s = n × bits / 8, rounded to the nearest byte.
	v := n.Mul(n, new(big.Rat).SetFrac64(bits, 8))
	if v.Cmp(new(big.Rat).SetInt64(int64(MaxRate))) > 0 {
		return 0, fmt.Errorf("rate %q is above the largest cap, %s", s, MaxRate)
	}
	q, r := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if r.Lsh(r, 1).Cmp(v.Denom()) >= 0 {
		q.Add(q, big.NewInt(1))
	}
	rate := Rate(q.Int64())
	if rate < MinRate {
		return 0, fmt.Errorf("rate %q is below the smallest cap, %s", s, MinRate)
	}
	return rate, nil
}

// String writes the rate in bits per second with the largest SI prefix
// that keeps a whole part, exactly (ParseRate reads it back to the same
// Rate): "20 Mbit/s", "1.5 Gbit/s", "unlimited".
func (r Rate) String() string {
	if r <= 0 {
		return Unlimited
	}
	bits := int64(r) * 8
	prefix, size := "", int64(1)
	for _, p := range []struct {
		name string
		size int64
	}{{"T", 1e12}, {"G", 1e9}, {"M", 1e6}, {"k", 1e3}} {
		if bits >= p.size {
			prefix, size = p.name, p.size
			break
		}
	}
	whole, frac := bits/size, bits%size
	s := strconv.FormatInt(whole, 10)
	if frac != 0 {
		digits := len(strconv.FormatInt(size, 10)) - 1
		f := strings.TrimRight(fmt.Sprintf("%0*d", digits, frac), "0")
		s += "." + f
	}
	return s + " " + prefix + "bit/s"
}

// errInvalid marks a cap that does not validate; the API maps it to an
// invalid-parameter error.
var errInvalid = errors.New("invalid bandwidth cap")

// IsInvalid reports whether err is a validation failure of Compile (the
// caller's input), not a failure to read or write the store.
func IsInvalid(err error) bool { return errors.Is(err, errInvalid) }
