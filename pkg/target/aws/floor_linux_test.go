//go:build linux

package aws

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"hash/crc32"
	"io"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// floorSinkEnv makes the test binary a TLS sink on loopback that reads and
// drops whatever its clients send (BenchmarkStageFloor's far end, in a
// process of its own so its CPU is not counted).
const floorSinkEnv = "REHOST_BENCH_FLOOR_SINK"

// BenchmarkStageFloor measures, on this machine, the parts of staging raw
// data that no uploader can leave out, each on its own and together: pread
// of a part (16 MiB, in reads of fillChunk) from a file in the page cache
// into a reused buffer, CRC32C of it, and a TLS write of the same bytes to
// a loopback sink that drops them (crypto/tls's own 16 KiB record writes,
// and gathered batchSize bytes at a time as the S3 client's bodyConns do).
// cpu-s/GiB is this process's user+system CPU per GiB (the sink is another
// process); "all" is the floor for a part-buffered raw stage from a file.
// 1 GiB per op (-short: 128 MiB).
func BenchmarkStageFloor(b *testing.B) {
	size := int64(1 << 30)
	if testing.Short() {
		size >>= 3
	}
	path := filepath.Join(b.TempDir(), "random.img")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := io.CopyN(f, mrand.NewChaCha8([32]byte{1}), size); err != nil {
		b.Fatal(err)
	}
	f.Close()
	if f, err = os.Open(path); err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, benchPart)
	for i := range buf {
		buf[i] = byte(i)
	}
	dial := startFloorSink(b)

	pread := func(off int64, chunk int, crc bool) {
		var c uint32
		for o := 0; o < len(buf); o += chunk {
			if _, err := f.ReadAt(buf[o:o+chunk], off+int64(o)); err != nil {
				b.Fatal(err)
			}
			if crc {
				c = crc32.Update(c, castagnoli, buf[o:o+chunk])
			}
		}
	}
	send := func(w io.Writer, bc *batchConn) {
		if bc != nil {
			bc.gather(true)
		}
		if _, err := w.Write(buf); err != nil {
			b.Fatal(err)
		}
		if bc != nil {
			if err := bc.gather(false); err != nil {
				b.Fatal(err)
			}
		}
	}
	cases := []struct {
		name string
		part func(off int64, w io.Writer, bc *batchConn)
	}{
		{"pread", func(off int64, _ io.Writer, _ *batchConn) { pread(off, fillChunk, false) }},
		{"pread-256KiB", func(off int64, _ io.Writer, _ *batchConn) { pread(off, 256<<10, false) }},
		{"crc32c", func(int64, io.Writer, *batchConn) { crc32.Update(0, castagnoli, buf) }},
		{"pread+crc32c", func(off int64, _ io.Writer, _ *batchConn) { pread(off, fillChunk, true) }},
		{"tls-records", func(_ int64, w io.Writer, _ *batchConn) { send(w, nil) }},
		{"tls-gathered", func(_ int64, w io.Writer, bc *batchConn) { send(w, bc) }},
		{"all", func(off int64, w io.Writer, bc *batchConn) { pread(off, fillChunk, true); send(w, bc) }},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			w, bc := dial(b)
			defer w.Close()
			b.SetBytes(size)
			var cpu time.Duration
			for b.Loop() {
				before := cpuTime()
				for off := int64(0); off < size; off += benchPart {
					c.part(off, w, bc)
				}
				cpu += cpuTime() - before
			}
			b.ReportMetric(cpu.Seconds()/float64(b.N)/(float64(size)/(1<<30)), "cpu-s/GiB")
		})
	}
}

// cpuTime is this process's user and system CPU so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// floorSink is what the sink prints: its address and certificate.
type floorSink struct {
	Addr string `json:"addr"`
	Cert string `json:"cert"`
}

// startFloorSink starts the sink process and returns a dialer of TLS
// connections to it through a batchConn, as the S3 client dials.
func startFloorSink(b *testing.B) func(*testing.B) (*tls.Conn, *batchConn) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), floorSinkEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdin, err := cmd.StdinPipe() // closed at cleanup: the sink exits
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	var sink floorSink
	if err := json.NewDecoder(bufio.NewReader(out)).Decode(&sink); err != nil {
		b.Fatalf("floor sink: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(sink.Cert)) {
		b.Fatal("floor sink: no certificate")
	}
	return func(b *testing.B) (*tls.Conn, *batchConn) {
		raw, err := net.Dial("tcp", sink.Addr)
		if err != nil {
			b.Fatal(err)
		}
		bc := &batchConn{Conn: raw}
		tc := tls.Client(bc, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		return tc, bc
	}
}

// runFloorSink is the sink process: it serves TLS on a loopback port with
// a fresh self-signed certificate, drops what it reads, and exits when its
// stdin closes.
func runFloorSink() int {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor sink:", err)
		return 1
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "floor sink"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor sink:", err)
		return 1
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor sink:", err)
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	json.NewEncoder(os.Stdout).Encode(floorSink{Addr: ln.Addr().String(),
		Cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))})
	io.Copy(io.Discard, os.Stdin)
	return 0
}
