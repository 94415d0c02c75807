package emulator

import (
	"archive/tar"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path"
	"strings"

	"github.com/rehost/rehost/pkg/disk"
)

// An OVA is a tar archive whose first member is the OVF descriptor; the
// descriptor's References name the files and its DiskSection the disks,
// each a stream-optimized VMDK member of the archive.

type ovfEnvelope struct {
	Files []struct {
		ID        string `xml:"id,attr"`
		Href      string `xml:"href,attr"`
		ChunkSize string `xml:"chunkSize,attr"`
	} `xml:"References>File"`
	Disks []struct {
		FileRef string `xml:"fileRef,attr"`
		Format  string `xml:"format,attr"`
	} `xml:"DiskSection>Disk"`
}

// maxOVFSize bounds the descriptor read into memory.
const maxOVFSize = 4 << 20

func ovfError(format string, args ...any) error {
	return fail("ClientError: Disk validation failed [OVF file parsing error: "+format+"]", args...)
}

// countingReader counts the bytes read through it: the offset in the
// archive of the member tar.Reader has just reached.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// openOVA returns the OVA's disks in DiskSection order, each read in place
// from the archive.
func openOVA(f *os.File, size int64) ([]disk.Sparse, error) {
	type member struct{ off, size int64 }
	members := map[string]member{}
	var desc []byte
	cr := &countingReader{r: io.NewSectionReader(f, 0, size)}
	tr := tar.NewReader(cr)
	for first := true; ; first = false {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, unreadable("OVA")
		}
		if first {
			if !strings.EqualFold(path.Ext(h.Name), ".ovf") {
				return nil, unreadable("OVA") // the descriptor must come first
			}
			if h.Size > maxOVFSize {
				return nil, ovfError("descriptor %s is larger than %d bytes", h.Name, maxOVFSize)
			}
			if desc, err = io.ReadAll(tr); err != nil {
				return nil, unreadable("OVA")
			}
			continue
		}
		members[h.Name] = member{off: cr.n, size: h.Size}
	}
	if desc == nil {
		return nil, unreadable("OVA")
	}
	var env ovfEnvelope
	if err := xml.Unmarshal(desc, &env); err != nil {
		return nil, ovfError("%v", err)
	}
	if len(env.Disks) == 0 {
		return nil, ovfError("the descriptor names no disk")
	}
	var out []disk.Sparse
	for _, d := range env.Disks {
		href := ""
		for _, fl := range env.Files {
			if fl.ID == d.FileRef {
				if fl.ChunkSize != "" {
					return nil, ovfError("OVA with chunked disk files is not supported")
				}
				href = fl.Href
			}
		}
		m, ok := members[href]
		if href == "" || !ok {
			return nil, ovfError("disk file %q is not in the archive", d.FileRef)
		}
		img, err := disk.Open(io.NewSectionReader(f, m.off, m.size), m.size)
		if err != nil || img.Info().Format != disk.VMDK || img.Info().Subformat != "streamOptimized" {
			return nil, unreadable("VMDK")
		}
		out = append(out, img)
	}
	return out, nil
}
