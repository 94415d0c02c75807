package boot

import (
	"fmt"
	"strconv"
	"strings"
)

// Slot names a system partition: "a" or "b".
type Slot string

// The two system partitions.
const (
	SlotA Slot = "a"
	SlotB Slot = "b"
)

// Partition names and numbers of the appliance disk (GPT), which the build
// makes and GRUB's configuration and the init address.
const (
	BIOSName = "rehost-bios" // GRUB's core image, for BIOS
	ESPName  = "rehost-boot" // EFI system partition: shim, GRUB, grub.cfg, grubenv
	DataName = "rehost-data"
	espPart  = 2
	// EnvPath is grubenv on the EFI system partition, where GRUB's
	// prefix (the signed GRUB's /EFI/debian) puts it.
	EnvPath = "EFI/debian/grubenv"
	// ConfigPath is GRUB's configuration on the EFI system partition.
	ConfigPath = "EFI/debian/grub.cfg"
)

// MaxTries is how many times the boot loader starts a system on trial
// before it returns to the default one.
const MaxTries = 3

// ParseSlot reads "a" or "b" (either case).
func ParseSlot(s string) (Slot, error) {
	switch Slot(strings.ToLower(s)) {
	case SlotA:
		return SlotA, nil
	case SlotB:
		return SlotB, nil
	}
	return "", fmt.Errorf("system slot %q: want a or b", s)
}

// Other is the other system partition.
func (s Slot) Other() Slot {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

// PartName is the slot's GPT partition name.
func (s Slot) PartName() string { return "rehost-system-" + string(s) }

// PartNumber is the slot's GPT partition number.
func (s Slot) PartNumber() int {
	if s == SlotB {
		return 4
	}
	return 3
}

// String is "A" or "B", as the console and the boot menu name it.
func (s Slot) String() string { return strings.ToUpper(string(s)) }

// Variables of grubenv.
const (
	varDefault = "rehost_slot"
	varTrial   = "rehost_try"
	varTries   = "rehost_tries"
	varVersion = "rehost_version_"
)

// State is what grubenv says about the system partitions.
type State struct {
	// Default boots when no trial is armed: the last system that proved
	// itself (its connector answered).
	Default Slot
	// Trial is a freshly written system armed for trial boots, or "".
	Trial Slot
	// TriesLeft is how many more times the boot loader starts Trial;
	// GRUB counts it down before each trial boot.
	TriesLeft int
	// Versions of the systems, for the boot menu ("" for an empty slot).
	Versions map[Slot]string
}

// FromEnv reads the state from grubenv; an empty or foreign environment
// means system A, no trial.
func FromEnv(e Env) State {
	s := State{Default: SlotA, Versions: map[Slot]string{}}
	if d, err := ParseSlot(e[varDefault]); err == nil {
		s.Default = d
	}
	if t, err := ParseSlot(e[varTrial]); err == nil {
		s.Trial = t
		s.TriesLeft, _ = strconv.Atoi(e[varTries])
		s.TriesLeft = max(0, min(s.TriesLeft, MaxTries))
	}
	for _, sl := range []Slot{SlotA, SlotB} {
		if v := e[varVersion+string(sl)]; v != "" {
			s.Versions[sl] = v
		}
	}
	return s
}

// Env writes the state as grubenv variables.
func (s State) Env() Env {
	e := Env{varDefault: string(s.Default), varTrial: string(s.Trial), varTries: ""}
	if s.Trial != "" {
		e[varTries] = strconv.Itoa(s.TriesLeft)
	}
	for sl, v := range s.Versions {
		if v != "" {
			e[varVersion+string(sl)] = v
		}
	}
	return e
}

// Outcome is what a boot finds when it compares the system it runs with
// grubenv.
type Outcome int

// Outcomes of a boot.
const (
	// Normal: no trial, the default system runs.
	Normal Outcome = iota
	// Picked: no trial, the other system runs (chosen at the boot menu).
	Picked
	// OnTrial: the system armed for a trial runs; it must prove itself
	// (Confirm) or give up (GiveUp).
	OnTrial
	// TrialFailed: a trial of the other system is armed, yet this one
	// runs: the boot loader returned here (the trial used its boots, or
	// could not be loaded), or this system was chosen at the boot menu.
	TrialFailed
)

// AtBoot is what running the system in slot means.
func (s State) AtBoot(running Slot) Outcome {
	switch {
	case s.Trial == running:
		return OnTrial
	case s.Trial != "":
		return TrialFailed
	case s.Default != running:
		return Picked
	}
	return Normal
}

// Confirm makes the running system the default and ends its trial.
func (s *State) Confirm(running Slot) {
	s.Default, s.Trial, s.TriesLeft = running, "", 0
}

// GiveUp ends a trial that failed on the system itself (its connector did
// not start): the next boot returns to the default, and that system,
// finding the trial still armed, reports it rolled back.
func (s *State) GiveUp() { s.TriesLeft = 0 }

// Abandon forgets a failed trial once the default system reported it.
func (s *State) Abandon() { s.Trial, s.TriesLeft = "", 0 }

// BeginWrite prepares to write target while running runs: the running
// system becomes the default and no trial is armed, so a power loss in
// the middle of writing boots the running system again. target's version
// is forgotten until Arm.
func (s *State) BeginWrite(running, target Slot) {
	s.Default, s.Trial, s.TriesLeft = running, "", 0
	delete(s.Versions, target)
}

// Arm arms target, freshly written with version, for MaxTries trial
// boots.
func (s *State) Arm(target Slot, version string) {
	s.Trial, s.TriesLeft = target, MaxTries
	if s.Versions == nil {
		s.Versions = map[Slot]string{}
	}
	s.Versions[target] = version
}

// TrialBoots is how many times the boot loader has started the armed
// trial.
func (s State) TrialBoots() int { return MaxTries - s.TriesLeft }
