// Package cli holds the verbs of the rehost command, in a file per noun-verb
// (disk_inspect.go, register.go, …) or per noun where a noun has several
// (app.go, run.go, state_backup.go). Each file registers its verbs in an
// init function, one Register entry (name, usage, summary, flags) and one
// function per verb; cmd/rehost dispatches to them. The dispatcher (Program)
// also serves other commands' verbs: internal/lab registers rehost-lab's.
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
	"github.com/rehost/rehost/pkg/store"
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

// Program is a command and its verbs.
type Program struct {
	// Name is the command's name in usage and errors, e.g. "rehost".
	Name string
	// Summary is the one line usage prints under the name.
	Summary  string
	commands map[string]Command
}

// NewProgram makes a command without verbs.
func NewProgram(name, summary string) *Program {
	return &Program{Name: name, Summary: summary, commands: map[string]Command{}}
}

// rehost is the product command; its verbs register with Register.
var rehost = NewProgram("rehost", "agentless server migration to AWS")

// Register adds verbs to rehost; it panics on a duplicate name, a
// programming error.
func Register(cs ...Command) { rehost.Register(cs...) }

// Register adds verbs; it panics on a duplicate name, a programming error.
func (p *Program) Register(cs ...Command) {
	for _, c := range cs {
		if _, dup := p.commands[c.Name]; dup {
			panic("cli: duplicate command " + c.Name)
		}
		p.commands[c.Name] = c
	}
}

// ErrUsage marks an error caused by how the command was called; Main prints
// the command's usage after it and exits 2.
var ErrUsage = errors.New("usage")

// ExitStateNewer is the exit status of a verb refused because a newer
// rehost migrated the state (store.ErrSchemaNewer): the appliance's init,
// seeing it after a rolled-back upgrade, restores the copy of the state it
// took before that upgrade.
const ExitStateNewer = 3

// Product is the rehost command.
func Product() *Program { return rehost }

// Main runs the rehost verb named by args and returns the exit code.
func Main(ctx context.Context, env Env, args []string) int { return rehost.Main(ctx, env, args) }

// lookup finds the verb args name, by the longest match of leading words;
// n is how many words it took (0: none).
func (p *Program) lookup(args []string) (cmd Command, n int) {
	for i := len(args); i > 0; i-- {
		if c, ok := p.commands[strings.Join(args[:i], " ")]; ok {
			return c, i
		}
	}
	return Command{}, 0
}

// Check reports whether args (without the program's name) name a verb and
// give it only flags it has, without running it: the docs test calls it on
// every command line the docs show.
func (p *Program) Check(args []string) error {
	cmd, n := p.lookup(args)
	if n == 0 {
		if len(args) == 0 || slices.Contains([]string{"help", "-h", "--help", "--version", "-version", "version"}, args[0]) {
			return nil
		}
		return fmt.Errorf("%s: unknown command %q", p.Name, strings.Join(args, " "))
	}
	fs := flag.NewFlagSet(p.Name+" "+cmd.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cmd.Flags(fs)
	if err := fs.Parse(interleave(fs, args[n:])); err != nil && !errors.Is(err, flag.ErrHelp) {
		return fmt.Errorf("%s %s: %w", p.Name, cmd.Name, err)
	}
	return nil
}

// Names lists the verbs, sorted.
func (p *Program) Names() []string { return slices.Sorted(maps.Keys(p.commands)) }

// Check is Program.Check of the rehost command.
func Check(args []string) error { return rehost.Check(args) }

// Main runs the verb named by args and returns the process exit code.
func (p *Program) Main(ctx context.Context, env Env, args []string) int {
	cmd, n := p.lookup(args)
	if n == 0 {
		if len(args) == 1 && (args[0] == "--version" || args[0] == "-version" || args[0] == "version") {
			fmt.Fprintf(env.Stdout, "%s %s\n", p.Name, version.String())
			return 0
		}
		if len(args) > 0 && args[0] != "help" && args[0] != "-h" && args[0] != "--help" {
			fmt.Fprintf(env.Stderr, "%s: unknown command %q\n\n", p.Name, strings.Join(args, " "))
			p.usage(env.Stderr)
			return 2
		}
		p.usage(env.Stdout)
		return 0
	}
	fs := flag.NewFlagSet(p.Name+" "+cmd.Name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	run := cmd.Flags(fs)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: %s %s %s\n\n%s\n\n", p.Name, cmd.Name, cmd.Usage, cmd.Summary)
		fs.PrintDefaults()
	}
	if err := fs.Parse(interleave(fs, args[n:])); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if err := run(ctx, env, fs.Args()); err != nil {
		fmt.Fprintf(env.Stderr, "%s %s: %v\n", p.Name, cmd.Name, err)
		if errors.Is(err, ErrUsage) {
			fs.Usage()
			return 2
		}
		if errors.Is(err, store.ErrSchemaNewer) {
			return ExitStateNewer
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

func (p *Program) usage(w io.Writer) {
	fmt.Fprintf(w, "%s — %s\n\nusage: %s COMMAND [flags] [args]\n\ncommands:\n", p.Name, p.Summary, p.Name)
	for _, n := range p.Names() {
		fmt.Fprintf(w, "  %-22s %s\n", n, p.commands[n].Summary)
	}
	fmt.Fprintf(w, "\nRun '%s COMMAND --help' for a command's flags.\n", p.Name)
}

// OSEnv is the Env of the running process.
func OSEnv() Env { return Env{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr} }
