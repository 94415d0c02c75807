// Package boot is the appliance's A/B boot control: which system
// partition boots, the boot counter of an upgrade on trial, and where they
// are kept — GRUB's environment block on the EFI system partition, which
// GRUB reads and writes at every boot (both firmwares boot GRUB) and the
// init rewrites in place, without mounting the partition.
//
// GRUB's side is the configuration Config returns; the init's side is
// State's methods. Between them, a system armed for a trial is booted at
// most MaxTries times; it becomes the default only when its connector
// answered, and otherwise the boot loader returns to the previous one.
package boot

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// EnvSize is the size of GRUB's environment block (grubenv).
const EnvSize = 1024

const envHeader = "# GRUB Environment Block\n"

// Env is GRUB's environment block: variables GRUB's load_env and save_env
// read and write.
type Env map[string]string

// ParseEnv reads an environment block as GRUB writes it.
func ParseEnv(b []byte) (Env, error) {
	if len(b) != EnvSize || !bytes.HasPrefix(b, []byte(envHeader)) {
		return nil, fmt.Errorf("not a GRUB environment block (want %d bytes starting %q)", EnvSize, strings.TrimSpace(envHeader))
	}
	env := Env{}
	for _, line := range strings.Split(string(b[len(envHeader):]), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return nil, fmt.Errorf("GRUB environment block: line %q has no '='", line)
		}
		env[k] = v
	}
	return env, nil
}

// Marshal writes the block: the header, one name=value line per variable
// in name order, '#' to the end.
func (e Env) Marshal() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(envHeader)
	keys := make([]string, 0, len(e))
	for k := range e {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		v := e[k]
		// GRUB escapes these; the appliance's values never need them.
		if strings.ContainsAny(k, "=\n\\#") || k == "" || strings.ContainsAny(v, "\n\\") {
			return nil, fmt.Errorf("GRUB environment: %q=%q: names and values must not hold '=', '#', '\\' or a newline", k, v)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	if b.Len() > EnvSize {
		return nil, fmt.Errorf("GRUB environment: %d bytes, more than the block's %d", b.Len(), EnvSize)
	}
	b.Write(bytes.Repeat([]byte{'#'}, EnvSize-b.Len()))
	return b.Bytes(), nil
}
