package track

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/rehost/rehost/pkg/disk"
	"github.com/rehost/rehost/pkg/source"
)

func pages(ps ...[]disk.Extent) Fetch {
	return func(context.Context) ([]disk.Extent, bool, error) {
		p := ps[0]
		ps = ps[1:]
		return p, len(ps) == 0, nil
	}
}

func TestPagesClipRoundAndMerge(t *testing.T) {
	ctx := context.Background()
	// Areas straddling From, unaligned, touching across pages, one ending
	// at the disk's end.
	p := NewPages("test", 1000, 8192, pages(
		[]disk.Extent{{Offset: 0, Length: 600}, {Offset: 900, Length: 300}},
		[]disk.Extent{},
		[]disk.Extent{{Offset: 1100, Length: 100}, {Offset: 2048, Length: 10}, {Offset: 8000, Length: 192}},
	))
	got, err := All(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	want := []disk.Extent{{Offset: 1000 / 512 * 512, Length: 1536 - 512}, {Offset: 2048, Length: 512}, {Offset: 7680, Length: 512}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("areas %v, want %v", got, want)
	}
	if _, err := p.Next(ctx); !errors.Is(err, io.EOF) {
		t.Fatalf("after the end: %v", err)
	}
	for name, f := range map[string]Fetch{
		"out of order":     pages([]disk.Extent{{Offset: 4096, Length: 512}}, []disk.Extent{{Offset: 0, Length: 512}}),
		"outside the disk": pages([]disk.Extent{{Offset: 8000, Length: 512}}),
		"empty area":       pages([]disk.Extent{{Offset: 0, Length: 0}}),
	} {
		if _, err := All(ctx, NewPages("test", 0, 8192, f)); err == nil {
			t.Errorf("%s accepted", name)
		}
	}
}

func TestIDs(t *testing.T) {
	id := ID(1<<30, "52 ab/3")
	c, n, err := ParseID("2000", id)
	if err != nil || c != 1<<30 || n != "52 ab/3" {
		t.Fatalf("%q: %d %q %v", id, c, n, err)
	}
	for _, bad := range []string{"", "52 ab/3", "v1:x:y", "v1:0:y", "v2:10:y", "v1:10:"} {
		if _, _, err := ParseID("2000", bad); !errors.Is(err, source.ErrResync) {
			t.Errorf("%q: %v, want a resync", bad, err)
		}
	}
	if err := Resized("2000", id, 10, 5); !errors.Is(err, source.ErrResync) {
		t.Errorf("a shrunk disk: %v", err)
	}
	if err := Resized("2000", id, 5, 10); err != nil {
		t.Errorf("a grown disk: %v", err)
	}
}

// BenchmarkPages streams the map of a 2 TiB disk with a million changed
// 4 KiB areas, 4096 a page, as a source pages it: memory per page stays
// that of one page whatever the disk.
func BenchmarkPages(b *testing.B) {
	const n, per = 1 << 20, 4096
	const size = 2 << 40
	page := make([]disk.Extent, per)
	for i := 0; i < b.N; i++ {
		k := 0
		p := NewPages("bench", 0, size, func(context.Context) ([]disk.Extent, bool, error) {
			for j := range page {
				page[j] = disk.Extent{Offset: int64(k+j) * (size / n), Length: 4096}
			}
			k += per
			return page, k >= n, nil
		})
		areas := 0
		for {
			got, err := p.Next(context.Background())
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
			areas += len(got)
		}
		if areas != n {
			b.Fatalf("%d areas", areas)
		}
	}
	b.ReportMetric(float64(n), "areas/op")
}
