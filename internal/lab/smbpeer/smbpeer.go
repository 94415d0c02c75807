// Package smbpeer starts Samba's smbd as an unprivileged process on a
// loopback port, serving read-only shares, for the Hyper-V source's tests
// and the demo: the connector reads a checkpoint's disks from it over SMB
// as it would from a Hyper-V host's admin share.
//
// smbd runs with its own smb.conf, state, lock and log directories in a
// private temporary directory, as the current user — or as nobody when the
// caller is root, so the test never runs a file server with privileges. One
// account, authenticated with NTLM, maps to that user. Samba logs every
// SMB2 READ it serves (offset, length, bytes returned); Reads parses that
// log, so a test counts what the client read at the server itself.
package smbpeer

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	"golang.org/x/crypto/md4" //nolint:staticcheck // NTLM's NT hash is MD4 by definition
)

// Options configure Start.
type Options struct {
	// Shares are the share names to serve, each a directory of the peer's
	// (ShareDir); default one share, "vms".
	Shares []string
	// User and Domain are the account clients log in with (default
	// "rehost", "LAB"); the password is generated.
	User, Domain string
}

// Server is a running smbd.
type Server struct {
	// Addr is host:port of the SMB listener on 127.0.0.1.
	Addr     string
	Port     int
	User     string
	Password string
	Domain   string

	dir  string
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// Binary is where Debian's samba package installs smbd.
var Binary = "/usr/sbin/smbd"

// Start writes a configuration and starts smbd, waiting until it accepts
// connections.
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	if _, err := os.Stat(Binary); err != nil {
		return nil, fmt.Errorf("smbpeer: %s not found: install the Debian package samba (scripts/deps.sh does): %w", Binary, err)
	}
	if len(o.Shares) == 0 {
		o.Shares = []string{"vms"}
	}
	if o.User == "" {
		o.User = "rehost"
	}
	if o.Domain == "" {
		o.Domain = "LAB"
	}
	unixName, uid, gid, cred, err := runAs()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "smbpeer-")
	if err != nil {
		return nil, err
	}
	s := &Server{User: o.User, Domain: o.Domain, dir: dir, log: filepath.Join(dir, "log.smbd"), done: make(chan struct{})}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	var pw [12]byte
	if _, err := rand.Read(pw[:]); err != nil {
		return nil, err
	}
	s.Password = "Pw-" + hex.EncodeToString(pw[:])
	// The share and config stay the caller's (readable by all); smbd's own
	// state belongs to the user it runs as.
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	for _, d := range []string{"private", "lock", "state", "cache", "pid", "ncalrpc"} {
		p := filepath.Join(dir, d)
		if err := os.Mkdir(p, 0o700); err != nil {
			return nil, err
		}
		if err := os.Chown(p, uid, gid); err != nil {
			return nil, err
		}
	}
	for _, sh := range o.Shares {
		if err := os.MkdirAll(s.ShareDir(sh), 0o755); err != nil {
			return nil, err
		}
	}
	if s.Port, err = freePort(); err != nil {
		return nil, err
	}
	s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))

	passdb := filepath.Join(dir, "private", "smbpasswd")
	entry := fmt.Sprintf("%s:%d:%s:%s:[U          ]:LCT-%08X:\n", unixName, uid, strings.Repeat("X", 32), ntHash(s.Password), time.Now().Unix())
	if err := writeOwned(passdb, entry, 0o600, uid, gid); err != nil {
		return nil, err
	}
	usermap := filepath.Join(dir, "users.map")
	if err := os.WriteFile(usermap, []byte(unixName+" = "+o.User+"\n"), 0o644); err != nil {
		return nil, err
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, `[global]
	netbios name = HVLAB
	workgroup = %s
	server role = standalone server
	smb ports = %d
	interfaces = 127.0.0.1
	bind interfaces only = yes
	disable netbios = yes
	private dir = %[3]s/private
	lock directory = %[3]s/lock
	state directory = %[3]s/state
	cache directory = %[3]s/cache
	pid directory = %[3]s/pid
	ncalrpc dir = %[3]s/ncalrpc
	log file = %[4]s
	max log size = 0
	log level = 1 smb2:3
	passdb backend = smbpasswd:%[5]s
	username map = %[6]s
	map to guest = never
	load printers = no
	printcap name = /dev/null
	disable spoolss = yes
	store dos attributes = no
	map archive = no
`, o.Domain, s.Port, dir, s.log, passdb, usermap)
	for _, sh := range o.Shares {
		fmt.Fprintf(&conf, "[%s]\n\tpath = %s\n\tread only = yes\n", sh, s.ShareDir(sh))
	}
	confPath := filepath.Join(dir, "smb.conf")
	if err := os.WriteFile(confPath, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	if err := writeOwned(s.log, "", 0o644, uid, gid); err != nil {
		return nil, err
	}

	out, err := os.Create(filepath.Join(dir, "smbd.out"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	s.cmd = exec.Command(Binary, "--foreground", "--no-process-group", "--configfile="+confPath)
	s.cmd.Stdout, s.cmd.Stderr = out, out
	s.cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + dir}
	// A group of its own, so Close ends smbd and the children it forks.
	s.cmd.SysProcAttr = procAttr(cred)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("smbpeer: start smbd: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	if err := s.waitReady(ctx); err != nil {
		b, _ := os.ReadFile(filepath.Join(dir, "smbd.out"))
		return nil, fmt.Errorf("smbpeer: %w\n%s", err, tail(string(b), 20))
	}
	return s, nil
}

// ShareDir is the directory served as share name.
func (s *Server) ShareDir(name string) string { return filepath.Join(s.dir, "shares", name) }

func (s *Server) waitReady(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		select {
		case <-s.done:
			return errors.New("smbd exited before listening")
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("smbd did not listen on %s within 20 s", s.Addr)
		}
	}
}

// Close stops smbd and its children and removes its directory.
func (s *Server) Close() error {
	if s.cmd != nil && s.cmd.Process != nil {
		pid := s.cmd.Process.Pid
		terminateGroup(pid)
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
			killGroup(pid)
			<-s.done
		}
		// Children forked per connection may outlive the parent briefly.
		killGroup(pid)
	}
	return os.RemoveAll(s.dir)
}

// Read is one SMB2 READ as smbd logged it.
type Read struct {
	File   string // path within the share
	Offset int64
	Length int64 // requested
	Bytes  int64 // returned
}

var readLine = regexp.MustCompile(`smbd_smb2_read: fnum \d+, file (.*), length=(\d+) offset=(\d+) read=(\d+)`)

// Reads returns every READ smbd has served so far.
func (s *Server) Reads() ([]Read, error) {
	f, err := os.Open(s.log)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Read
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := readLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		n, _ := strconv.ParseInt(m[2], 10, 64)
		off, _ := strconv.ParseInt(m[3], 10, 64)
		got, _ := strconv.ParseInt(m[4], 10, 64)
		out = append(out, Read{File: m[1], Offset: off, Length: n, Bytes: got})
	}
	return out, sc.Err()
}

// BytesRead sums the bytes smbd returned per file.
func (s *Server) BytesRead() (map[string]int64, error) {
	rs, err := s.Reads()
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, r := range rs {
		out[r.File] += r.Bytes
	}
	return out, nil
}

func writeOwned(path, content string, mode os.FileMode, uid, gid int) error {
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		return err
	}
	return os.Chown(path, uid, gid)
}

// ntHash is the NT OWF of a password: MD4 of its UTF-16LE form, in the
// upper-case hex the smbpasswd file holds.
func ntHash(pw string) string {
	h := md4.New()
	for _, u := range utf16.Encode([]rune(pw)) {
		h.Write([]byte{byte(u), byte(u >> 8)})
	}
	return strings.ToUpper(hex.EncodeToString(h.Sum(nil)))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(parts[max(0, len(parts)-lines):], "\n")
}
