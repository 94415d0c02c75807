package cli

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/rehost/rehost/connector/api"
)

// listing prints the look-alike listings of the list verbs: a table with a
// header, or with --json the items themselves.
func listing[T any](env Env, asJSON bool, items []T, header string, row func(T) []any) error {
	if asJSON {
		if items == nil {
			items = []T{}
		}
		return printJSON(env.Stdout, items)
	}
	tw := tabwriter.NewWriter(env.Stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, it := range items {
		cells := row(it)
		parts := make([]string, len(cells))
		for i, c := range cells {
			parts[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(parts, "\t"))
	}
	return tw.Flush()
}

// cell renders one table cell: "-" for nothing, times in RFC 3339.
func cell(v any) string {
	switch x := v.(type) {
	case api.Time:
		if x.IsZero() {
			return "-"
		}
		return x.Local().Format(time.RFC3339)
	case time.Time:
		if x.IsZero() {
			return "-"
		}
		return x.Local().Format(time.RFC3339)
	case string:
		if x == "" {
			return "-"
		}
		return x
	}
	return fmt.Sprint(v)
}

// bytesIEC renders a byte count in binary units (1.5 GiB).
func bytesIEC(n int64) string { return humanize.IBytes(uint64(max(n, 0))) }
