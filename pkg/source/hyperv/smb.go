package hyperv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hirochachacha/go-smb2"

	"github.com/rehost/rehost/pkg/source"
	"github.com/rehost/rehost/pkg/source/internal/conn"
)

// NTSTATUS codes the SMB client acts on.
const (
	statusLogonFailure     = 0xC000006D
	statusAccessDenied     = 0xC0000022
	statusBadNetworkName   = 0xC00000CC
	statusNameNotFound     = 0xC0000034
	statusPathNotFound     = 0xC000003A
	statusAccountRestrict  = 0xC000006E
	statusPasswordExpired  = 0xC0000071
	statusAccountDisabled  = 0xC0000072
	statusAccountLockedOut = 0xC0000234
)

// smbFiles reads hosts' files over SMB with the source's credentials: one
// session per server, one tree connect per share, for the life of an
// export.
type smbFiles struct {
	cfg          Config
	endpointHost string

	mu       sync.Mutex
	sessions map[string]*smbSession // by address
}

type smbSession struct {
	conn   net.Conn
	sess   *smb2.Session
	shares map[string]*smb2.Share
}

func newSMB(cfg Config) files {
	addr, _ := endpointAddr(cfg.Endpoint)
	host, _, _ := net.SplitHostPort(addr)
	return &smbFiles{cfg: cfg, endpointHost: host, sessions: map[string]*smbSession{}}
}

// resolve maps a host path to (server, share, path in share): a UNC path
// as it is, a path under a configured prefix to its share, any other
// drive path to the node's administrative share (C:\x → \\node\C$\x).
func resolve(cfg Config, node, path string) (server, share, rel string, err error) {
	p := strings.ReplaceAll(strings.TrimSpace(path), "/", `\`)
	if rest, ok := strings.CutPrefix(p, `\\?\UNC\`); ok {
		p = `\\` + rest
	} else {
		p = strings.TrimPrefix(p, `\\?\`)
	}
	best := -1
	for i, s := range cfg.Shares {
		pre := strings.TrimRight(strings.ReplaceAll(s.Prefix, "/", `\`), `\`)
		if pre != "" && (strings.EqualFold(p, pre) || len(p) > len(pre) && strings.EqualFold(p[:len(pre)+1], pre+`\`)) &&
			(best < 0 || len(pre) > len(cfg.Shares[best].Prefix)) {
			best = i
		}
	}
	if best >= 0 {
		s := cfg.Shares[best]
		rest := strings.TrimLeft(p[len(strings.TrimRight(strings.ReplaceAll(s.Prefix, "/", `\`), `\`)):], `\`)
		target := strings.ReplaceAll(s.Share, "/", `\`)
		if !strings.HasPrefix(target, `\\`) {
			// A share of the node running the VM, maybe with a folder:
			// "Volume1" or "vms\\folder".
			target = `\\` + node + `\` + strings.Trim(target, `\`)
		}
		p = strings.TrimRight(target, `\`) + `\` + rest
	}
	if unc, ok := strings.CutPrefix(p, `\\`); ok {
		parts := strings.SplitN(unc, `\`, 3)
		if len(parts) < 3 || parts[0] == "" || parts[1] == "" {
			return "", "", "", fmt.Errorf("path %q is not \\\\server\\share\\file", path)
		}
		return parts[0], parts[1], parts[2], nil
	}
	if len(p) >= 3 && p[1] == ':' && p[2] == '\\' && isLetter(p[0]) {
		if node == "" {
			return "", "", "", fmt.Errorf("path %q: the host running the vm is unknown", path)
		}
		return node, strings.ToUpper(p[:1]) + "$", p[3:], nil
	}
	return "", "", "", fmt.Errorf("path %q is neither a drive path nor a UNC path", path)
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func (f *smbFiles) open(ctx context.Context, node, path string) (file, error) {
	server, share, rel, err := resolve(f.cfg, node, path)
	if err != nil {
		return nil, err
	}
	addr := smbAddress(f.cfg, f.endpointHost, server, node)
	sh, err := f.share(ctx, addr, server, share)
	if err != nil {
		return nil, err
	}
	fh, err := sh.WithContext(ctx).Open(rel)
	if err != nil {
		return nil, smbError(fmt.Sprintf(`open %s on \\%s\%s`, rel, server, share), err,
			"the checkpoint's file is missing or unreadable: check the path is shared as mapped")
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, smbError(fmt.Sprintf(`stat %s on \\%s\%s`, rel, server, share), err, "")
	}
	return &smbFile{f: fh, size: st.Size(), name: fmt.Sprintf(`\\%s\%s\%s`, server, share, rel)}, nil
}

func (f *smbFiles) share(ctx context.Context, addr, server, name string) (*smb2.Share, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := f.sessions[addr]
	if s == nil {
		d := net.Dialer{Timeout: f.cfg.Timeout, KeepAlive: 30 * time.Second}
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("connect to the SMB server of %s at %s: %v: %w", server, addr, err, source.ErrUnreachable)
		}
		user, domain := splitUser(f.cfg.User)
		sd := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: user, Password: f.cfg.Password, Domain: domain}}
		sess, err := sd.DialContext(ctx, conn)
		if err != nil {
			conn.Close()
			return nil, smbError(fmt.Sprintf("log on to the SMB server of %s at %s as %s", server, addr, f.cfg.User), err, "")
		}
		s = &smbSession{conn: conn, sess: sess, shares: map[string]*smb2.Share{}}
		f.sessions[addr] = s
	}
	key := strings.ToLower(name)
	if sh := s.shares[key]; sh != nil {
		return sh, nil
	}
	sh, err := s.sess.WithContext(ctx).Mount(fmt.Sprintf(`\\%s\%s`, server, name))
	if err != nil {
		hint := ""
		if strings.HasSuffix(name, "$") {
			hint = fmt.Sprintf("the administrative share %s is missing or refused to %s; share the VM's folder and map its path to the share", name, f.cfg.User)
		} else {
			hint = "the share does not exist or refuses this account; check the source's share mapping"
		}
		return nil, smbError(fmt.Sprintf(`mount \\%s\%s`, server, name), err, hint)
	}
	s.shares[key] = sh
	return sh, nil
}

func (f *smbFiles) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for addr, s := range f.sessions {
		for _, sh := range s.shares {
			sh.Umount()
		}
		s.sess.Logoff()
		s.conn.Close()
		delete(f.sessions, addr)
	}
	return nil
}

func splitUser(u string) (user, domain string) {
	if d, n, ok := strings.Cut(u, `\`); ok {
		return n, d
	}
	if n, d, ok := strings.Cut(u, "@"); ok {
		return n, d
	}
	return u, ""
}

// smbError classifies an SMB failure and says what to do.
func smbError(op string, err error, hint string) error {
	var re *smb2.ResponseError
	var te *smb2.TransportError
	var pe *os.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	msg := err.Error()
	if hint != "" {
		msg += ": " + hint
	}
	switch {
	case errors.As(err, &re):
		switch re.Code {
		case statusLogonFailure, statusAccountRestrict, statusPasswordExpired, statusAccountDisabled, statusAccountLockedOut:
			return fmt.Errorf("%s: the credentials were refused (%v): %w", op, err, source.ErrAuth)
		case statusAccessDenied:
			return fmt.Errorf("%s: access denied: %s: %w", op, msg, source.ErrAuth)
		case statusBadNetworkName, statusNameNotFound, statusPathNotFound:
			return fmt.Errorf("%s: %s", op, msg)
		}
	case errors.As(err, &te), conn.Unreachable(err):
		return fmt.Errorf("%s: %v: %w", op, err, source.ErrUnreachable)
	}
	return fmt.Errorf("%s: %s", op, msg)
}

// smbFile is an open file of a share.
type smbFile struct {
	f    *smb2.File
	size int64
	name string
}

func (s *smbFile) Size() int64  { return s.size }
func (s *smbFile) Close() error { return s.f.Close() }

// ReadAt classifies a broken connection as transient, so a run retries.
func (s *smbFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := s.f.ReadAt(p, off)
	if err != nil && err != io.EOF {
		var te *smb2.TransportError
		if errors.As(err, &te) || conn.Unreachable(err) {
			return n, fmt.Errorf("read %s at %d: %v: %w", s.name, off, err, source.ErrUnreachable)
		}
		return n, fmt.Errorf("read %s at %d: %w", s.name, off, err)
	}
	return n, err
}
