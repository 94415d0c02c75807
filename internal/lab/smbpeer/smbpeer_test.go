package smbpeer

import (
	"bytes"
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hirochachacha/go-smb2"
)

func TestServeAndCountReads(t *testing.T) {
	s, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
	if err := os.WriteFile(filepath.Join(s.ShareDir("vms"), "disk.bin"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	dial := func(pw string) (*smb2.Session, error) {
		c, err := net.Dial("tcp", s.Addr)
		if err != nil {
			return nil, err
		}
		d := &smb2.Dialer{Initiator: &smb2.NTLMInitiator{User: s.User, Password: pw, Domain: s.Domain}}
		sess, err := d.Dial(c)
		if err != nil {
			c.Close()
		}
		return sess, err
	}
	if _, err := dial("wrong"); err == nil || !strings.Contains(err.Error(), "logon") {
		t.Fatalf("wrong password: %v", err)
	}
	sess, err := dial(s.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Logoff()
	share, err := sess.Mount("vms")
	if err != nil {
		t.Fatal(err)
	}
	f, err := share.Open("disk.bin")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 300000)
	if _, err := f.ReadAt(got, 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if !bytes.Equal(got, data[4096:4096+300000]) {
		t.Fatal("content differs")
	}
	if _, err := share.Create("new"); err == nil {
		t.Fatal("the share is writable")
	}
	if _, err := sess.Mount("nope"); err == nil {
		t.Fatal("unknown share mounted")
	}
	n, err := s.BytesRead()
	if err != nil {
		t.Fatal(err)
	}
	if n["disk.bin"] != 300000 {
		t.Fatalf("smbd logged %d bytes read of disk.bin, want 300000 (%v)", n["disk.bin"], n)
	}
}
