// Package version is the connector's version, stamped at build time:
//
//	go build -ldflags "-X github.com/rehost/rehost/connector/version.Version=1.2.3"
//
// Unstamped builds report the module version Go recorded, else "dev".
package version

import "runtime/debug"

// Version of this build.
var Version = ""

// String returns the version of this build.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
