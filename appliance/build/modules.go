package build

import (
	"bufio"
	"debug/elf"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// ReadModuleList parses modules.txt: one module name per line, # comments.
func ReadModuleList(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read module list: %w", err)
	}
	var names []string
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			names = append(names, modName(l))
		}
	}
	return names, nil
}

// modName is the canonical module name: the kernel treats - and _ alike.
func modName(s string) string {
	return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(s), ".ko"), "-", "_")
}

// ResolveModules finds the modules named in roots under the kernel's module
// tree (lib/modules/VERSION) and everything they depend on, and returns
// their paths relative to that tree in an order where each module follows
// its dependencies. The kernel package ships no modules.dep (depmod makes
// it on install), so dependencies come from each module's .modinfo.
func ResolveModules(tree string, roots []string) ([]string, error) {
	paths := map[string]string{}
	err := filepath.WalkDir(filepath.Join(tree, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.HasSuffix(p, ".ko") {
			rel, _ := filepath.Rel(tree, p)
			paths[modName(p)] = rel
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list kernel modules: %w", err)
	}
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		switch state[name] {
		case 1:
			return fmt.Errorf("kernel modules: dependency cycle %s", strings.Join(append(chain, name), " -> "))
		case 2:
			return nil
		}
		rel, ok := paths[name]
		if !ok {
			return fmt.Errorf("kernel module %q (needed by %s) is not in this kernel: remove it from appliance/modules.txt or pick another kernel", name, strings.Join(append([]string{"modules.txt"}, chain...), " -> "))
		}
		state[name] = 1
		deps, soft, err := moduleDeps(filepath.Join(tree, rel))
		if err != nil {
			return err
		}
		// A soft dependency names a module or a crypto algorithm
		// ("crc32c", "crct10dif"), which the generic module provides; one
		// that is neither is left out, as modprobe would.
		for _, d := range soft {
			if _, ok := paths[d]; !ok {
				d += "_generic"
			}
			if _, ok := paths[d]; ok {
				deps = append(deps, d)
			}
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, rel)
		return nil
	}
	for _, r := range roots {
		if err := visit(r, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// moduleDeps reads "depends=" and the "pre:" part of "softdep=" from a
// module's .modinfo section, each sorted for a stable order.
func moduleDeps(path string) (deps, soft []string, err error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read kernel module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, nil, nil
	}
	b, err := sec.Data()
	if err != nil {
		return nil, nil, fmt.Errorf("read kernel module %s: .modinfo: %w", path, err)
	}
	set, softSet := map[string]bool{}, map[string]bool{}
	for _, kv := range strings.Split(string(b), "\x00") {
		switch {
		case strings.HasPrefix(kv, "depends="):
			for _, d := range strings.Split(strings.TrimPrefix(kv, "depends="), ",") {
				if d != "" {
					set[modName(d)] = true
				}
			}
		case strings.HasPrefix(kv, "softdep="):
			// "pre: a b post: c"
			pre := false
			for _, w := range strings.Fields(strings.TrimPrefix(kv, "softdep=")) {
				switch w {
				case "pre:":
					pre = true
				case "post:":
					pre = false
				default:
					if pre {
						softSet[modName(w)] = true
					}
				}
			}
		}
	}
	return sortedKeys(set), sortedKeys(softSet), nil
}

func sortedKeys(m map[string]bool) []string {
	k := make([]string, 0, len(m))
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}
