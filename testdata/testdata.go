// Package testdata holds the fixtures shared across packages (README.md
// says where each came from), embedded so that tests and the lab binary
// read the same bytes wherever they run. Only tests and the lab import it;
// the product never does.
package testdata

import (
	"embed"
	"fmt"
)

//go:embed guests hyperv apps
var files embed.FS

// File returns a fixture by its path under testdata/ ("hyperv/errors.json").
// A missing fixture is a programming error: it panics.
func File(path string) []byte {
	b, err := files.ReadFile(path)
	if err != nil {
		panic(fmt.Sprintf("testdata: %v", err))
	}
	return b
}

// OSRelease returns the /etc/os-release of a guest recipe
// (guests/<name>.os-release).
func OSRelease(name string) string { return string(File("guests/" + name + ".os-release")) }
