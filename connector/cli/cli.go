// Package cli holds the verbs of the rehost command, one file per noun-verb
// (disk_inspect.go, emulator_aws.go, …). Each file registers its command in an
// init function; cmd/rehost dispatches to them.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/rehost/rehost/connector/version"
)

// Env is what a command may touch of the process, so tests can run verbs
// in-process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Command is one verb ("disk inspect").
type Command struct {
	Name    string // words separated by a space
	Usage   string // argument synopsis, e.g. "[--json] FILE"
	Summary string
	// Flags adds the command's flags to fs and returns the function that runs
	// it with the positional arguments left after parsing.
	Flags func(fs *flag.FlagSet) func(ctx context.Context, env Env, args []string) error
}

var commands = map[string]Command{}

// Register adds a command; it panics on a duplicate name, a programming error.
func Register(c Command) {
	if _, dup := commands[c.Name]; dup {
		panic("cli: duplicate command " + c.Name)
	}
	commands[c.Name] = c
}

// ErrUsage marks an error caused by how the command was called; Main prints
// the command's usage after it and exits 2.
var ErrUsage = errors.New("usage")

// Main runs the command named by args and returns the process exit code.
func Main(ctx context.Context, env Env, args []string) int {
	// Longest match of leading words to a command name.
	var cmd Command
	n := 0
	for i := len(args); i > 0; i-- {
		if c, ok := commands[strings.Join(args[:i], " ")]; ok {
			cmd, n = c, i
			break
		}
	}
	if n == 0 {
		if len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
			fmt.Fprintf(env.Stdout, "rehost %s\n", version.String())
			return 0
		}
		if len(args) > 0 && args[0] != "help" && args[0] != "-h" && args[0] != "--help" {
			fmt.Fprintf(env.Stderr, "rehost: unknown command %q\n\n", strings.Join(args, " "))
			usage(env.Stderr)
			return 2
		}
		usage(env.Stdout)
		return 0
	}
	fs := flag.NewFlagSet("rehost "+cmd.Name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	run := cmd.Flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: rehost %s %s\n\n%s\n\n", cmd.Name, cmd.Usage, cmd.Summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(interleave(fs, args[n:])); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := run(ctx, env, fs.Args()); err != nil {
		fmt.Fprintf(env.Stderr, "rehost %s: %v\n", cmd.Name, err)
		if errors.Is(err, ErrUsage) {
			fs.Usage()
			return 2
		}
		return 1
	}
	return 0
}

// interleave moves flags after positional arguments to the front, so
// "rehost disk inspect FILE --json" works as users expect.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) > 1 && a[0] == '-' {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			if f := fs.Lookup(name); f != nil {
				if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
					continue
				}
				if i+1 < len(args) {
					flags = append(flags, args[i+1])
					i++
				}
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(append(flags, "--"), pos...)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "rehost — agentless server migration to AWS\n\nusage: rehost COMMAND [flags] [args]\n\ncommands:")
	for _, n := range slices.Sorted(maps.Keys(commands)) {
		fmt.Fprintf(w, "  %-22s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintln(w, "\nRun 'rehost COMMAND --help' for a command's flags.")
}

// OSEnv is the Env of the running process.
func OSEnv() Env { return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr} }
