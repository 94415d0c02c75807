// Package instancetype is a catalogue of common EC2 instance types — their
// vCPUs, memory and an indicative hourly price — for suggesting a type for a
// migrated server from its CPUs and memory, and for checking a type offline.
// It is not the authority on what a region offers: before launching, the
// connector asks EC2 (DescribeInstanceTypes).
package instancetype

import (
	"cmp"
	"slices"
)

// Type is one EC2 instance type.
type Type struct {
	Name      string
	VCPUs     int
	MemoryMiB int64
	// Price is the Linux on-demand price per hour in us-east-1 in US
	// dollars, used only to rank types that fit.
	Price float64
}

// gib is MiB per GiB.
const gib = 1024

// types lists the general purpose (t3, m5, m6i), compute (c5) and memory
// (r5) families, smallest first within each.
var types = []Type{
	{"t3.nano", 2, gib / 2, 0.0052}, {"t3.micro", 2, 1 * gib, 0.0104}, {"t3.small", 2, 2 * gib, 0.0208},
	{"t3.medium", 2, 4 * gib, 0.0416}, {"t3.large", 2, 8 * gib, 0.0832}, {"t3.xlarge", 4, 16 * gib, 0.1664},
	{"t3.2xlarge", 8, 32 * gib, 0.3328},
	{"m5.large", 2, 8 * gib, 0.096}, {"m5.xlarge", 4, 16 * gib, 0.192}, {"m5.2xlarge", 8, 32 * gib, 0.384},
	{"m5.4xlarge", 16, 64 * gib, 0.768}, {"m5.8xlarge", 32, 128 * gib, 1.536}, {"m5.12xlarge", 48, 192 * gib, 2.304},
	{"m5.16xlarge", 64, 256 * gib, 3.072}, {"m5.24xlarge", 96, 384 * gib, 4.608},
	{"m6i.large", 2, 8 * gib, 0.096}, {"m6i.xlarge", 4, 16 * gib, 0.192}, {"m6i.2xlarge", 8, 32 * gib, 0.384},
	{"m6i.4xlarge", 16, 64 * gib, 0.768}, {"m6i.8xlarge", 32, 128 * gib, 1.536}, {"m6i.16xlarge", 64, 256 * gib, 3.072},
	{"m6i.32xlarge", 128, 512 * gib, 6.144},
	{"c5.large", 2, 4 * gib, 0.085}, {"c5.xlarge", 4, 8 * gib, 0.17}, {"c5.2xlarge", 8, 16 * gib, 0.34},
	{"c5.4xlarge", 16, 32 * gib, 0.68}, {"c5.9xlarge", 36, 72 * gib, 1.53}, {"c5.12xlarge", 48, 96 * gib, 2.04},
	{"c5.18xlarge", 72, 144 * gib, 3.06}, {"c5.24xlarge", 96, 192 * gib, 4.08},
	{"r5.large", 2, 16 * gib, 0.126}, {"r5.xlarge", 4, 32 * gib, 0.252}, {"r5.2xlarge", 8, 64 * gib, 0.504},
	{"r5.4xlarge", 16, 128 * gib, 1.008}, {"r5.8xlarge", 32, 256 * gib, 2.016}, {"r5.12xlarge", 48, 384 * gib, 3.024},
	{"r5.16xlarge", 64, 512 * gib, 4.032}, {"r5.24xlarge", 96, 768 * gib, 6.048},
}

// All returns the catalogue.
func All() []Type { return slices.Clone(types) }

// Lookup returns the type named name.
func Lookup(name string) (Type, bool) {
	i := slices.IndexFunc(types, func(t Type) bool { return t.Name == name })
	if i < 0 {
		return Type{}, false
	}
	return types[i], true
}

// Suggest returns the cheapest type with at least cpus vCPUs and memMiB of
// memory (ties: less memory, then fewer vCPUs, then the name), and false
// when none is large enough. A server that reports no CPUs or memory counts
// as one vCPU and 1 GiB.
func Suggest(cpus int, memMiB int64) (Type, bool) {
	cpus, memMiB = max(cpus, 1), max(memMiB, gib)
	var fit []Type
	for _, t := range types {
		if t.VCPUs >= cpus && t.MemoryMiB >= memMiB {
			fit = append(fit, t)
		}
	}
	if len(fit) == 0 {
		return Type{}, false
	}
	return slices.MinFunc(fit, func(a, b Type) int {
		return cmp.Or(cmp.Compare(a.Price, b.Price), cmp.Compare(a.MemoryMiB, b.MemoryMiB),
			cmp.Compare(a.VCPUs, b.VCPUs), cmp.Compare(a.Name, b.Name))
	}), true
}
