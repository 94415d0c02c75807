package instancetype

import "testing"

func TestSuggest(t *testing.T) {
	for _, c := range []struct {
		cpus int
		mem  int64
		want string
	}{
		{0, 0, "t3.micro"},
		{1, 512, "t3.micro"},
		{2, 2048, "t3.small"},
		{2, 4096, "t3.medium"},
		{2, 16 * 1024, "r5.large"},      // memory-heavy: cheaper than m5.xlarge
		{4, 8192, "t3.xlarge"},          // burstable is cheapest at this size
		{16, 32 * 1024, "c5.4xlarge"},   // compute-heavy
		{96, 700 * 1024, "r5.24xlarge"}, // only the largest memory type fits
	} {
		got, ok := Suggest(c.cpus, c.mem)
		if !ok || got.Name != c.want {
			t.Errorf("Suggest(%d, %d) = %s %v, want %s", c.cpus, c.mem, got.Name, ok, c.want)
		}
	}
	if _, ok := Suggest(256, 1024); ok {
		t.Error("Suggest(256 vCPUs) found a type")
	}
}

func TestLookup(t *testing.T) {
	if ty, ok := Lookup("m5.large"); !ok || ty.VCPUs != 2 || ty.MemoryMiB != 8192 {
		t.Errorf("m5.large = %+v %v", ty, ok)
	}
	if _, ok := Lookup("m9.huge"); ok {
		t.Error("m9.huge exists")
	}
	a := All()
	a[0].Name = "changed"
	if types[0].Name == "changed" {
		t.Error("All shares the catalogue")
	}
}
