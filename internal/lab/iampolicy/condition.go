package iampolicy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// negated operators hold when no policy value matches.
func negated(op string) bool {
	return strings.Contains(op, "Not") // StringNotEquals, NotIpAddress, ArnNotLike, …
}

func (c Condition) validate() error {
	for _, v := range c.Values {
		var err error
		switch family(c.Operator) {
		case "Numeric":
			_, err = strconv.ParseFloat(v, 64)
		case "Date":
			_, err = parseDate(v)
		case "Ip":
			_, err = parsePrefix(v)
		case "Bool", "Null":
			if !strings.EqualFold(v, "true") && !strings.EqualFold(v, "false") {
				err = fmt.Errorf("%q is not true or false", v)
			}
		}
		if err != nil {
			return fmt.Errorf("invalid value: %w", err)
		}
	}
	return nil
}

// family is the operator family op belongs to, which decides how its
// values parse: the prefix of its name (StringLike: String), Ip for the
// two IpAddress operators, else the operator itself (Bool, BinaryEquals,
// Null).
func family(op string) string {
	if strings.HasSuffix(op, "IpAddress") {
		return "Ip"
	}
	for _, f := range []string{"String", "Numeric", "Date", "Arn"} {
		if strings.HasPrefix(op, f) {
			return f
		}
	}
	return op
}

// holds evaluates the condition against the request, with IAM's rules for
// absent keys: false, except for negated operators, IfExists and
// ForAllValues (true), and Null (which tests presence).
func (c Condition) holds(req Request) bool {
	vals, present := req.value(c.Key)
	present = present && len(vals) > 0
	if c.Operator == "Null" {
		for _, v := range c.Values {
			if strings.EqualFold(v, "true") != present {
				return true
			}
		}
		return false
	}
	if !present {
		switch {
		case c.IfExists, c.Set == "ForAllValues":
			return true
		case c.Set == "ForAnyValue":
			return false
		}
		return negated(c.Operator)
	}
	one := func(v string) bool {
		m := c.anyPolicyValue(v, req)
		if negated(c.Operator) {
			return !m
		}
		return m
	}
	switch c.Set {
	case "ForAllValues":
		for _, v := range vals {
			if !one(v) {
				return false
			}
		}
		return true
	case "ForAnyValue":
		for _, v := range vals {
			if one(v) {
				return true
			}
		}
		return false
	}
	// A single-valued key (or a list used without a set qualifier): a
	// positive operator needs one matching value, a negated one none.
	if negated(c.Operator) {
		for _, v := range vals {
			if !one(v) {
				return false
			}
		}
		return true
	}
	for _, v := range vals {
		if one(v) {
			return true
		}
	}
	return false
}

// anyPolicyValue reports whether the request value v matches one of the
// policy's values under the positive form of the operator.
func (c Condition) anyPolicyValue(v string, req Request) bool {
	for _, pv := range c.Values {
		if c.Operator != "BinaryEquals" && family(c.Operator) != "Numeric" && family(c.Operator) != "Date" {
			var ok bool
			if pv, ok = substitute(pv, req); !ok {
				continue
			}
		}
		if c.match(pv, v) {
			return true
		}
	}
	return false
}

func (c Condition) match(pv, v string) bool {
	op := c.Operator
	switch family(op) {
	case "String":
		switch op {
		case "StringEquals", "StringNotEquals":
			return literal(pv) == v
		case "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase":
			return strings.EqualFold(literal(pv), v)
		default: // StringLike, StringNotLike
			return Wildcard(pv, v)
		}
	case "Numeric":
		a, err1 := strconv.ParseFloat(v, 64)
		b, err2 := strconv.ParseFloat(pv, 64)
		return err1 == nil && err2 == nil && compare(op, cmpFloat(a, b))
	case "Date":
		a, err1 := parseDate(v)
		b, err2 := parseDate(pv)
		return err1 == nil && err2 == nil && compare(op, a.Compare(b))
	case "Ip":
		pfx, err1 := parsePrefix(pv)
		ip, err2 := netip.ParseAddr(v)
		return err1 == nil && err2 == nil && pfx.Contains(ip.Unmap())
	case "Arn":
		return arnLike(pv, v)
	case "Bool":
		return strings.EqualFold(pv, v)
	case "BinaryEquals":
		return pv == v
	}
	return false
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// literal undoes the escaping of ${*}, ${?} and ${$} where a value is
// compared without wildcards.
func literal(p string) string { return strings.ReplaceAll(p, "\x00", "") }

// compare maps a three-way comparison of request value to policy value
// onto a Numeric/Date operator (negated ones compare as their positive).
func compare(op string, c int) bool {
	switch {
	case strings.HasSuffix(op, "LessThanEquals"):
		return c <= 0
	case strings.HasSuffix(op, "LessThan"):
		return c < 0
	case strings.HasSuffix(op, "GreaterThanEquals"):
		return c >= 0
	case strings.HasSuffix(op, "GreaterThan"):
		return c > 0
	}
	return c == 0 // Equals, NotEquals
}

func parseDate(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("%q is neither an ISO 8601 date nor epoch seconds", s)
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// arnLike compares two ARNs component by component (partition, service,
// region, account, resource), each with wildcards, as ArnLike does.
func arnLike(pattern, arn string) bool {
	if pattern == "*" {
		return true
	}
	p := strings.SplitN(pattern, ":", 6)
	a := strings.SplitN(arn, ":", 6)
	if len(p) != 6 || len(a) != 6 {
		return false
	}
	for i := range p {
		if !Wildcard(p[i], a[i]) {
			return false
		}
	}
	return true
}
