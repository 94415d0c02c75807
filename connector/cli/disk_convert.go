package cli

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/rehost/rehost/pkg/disk"
)

func init() {
	Register(Command{
		Name:  "disk convert",
		Usage: "--to raw|vmdk|vhd [--vhd-type fixed|dynamic] [--size BYTES] [--json] IN OUT",
		Summary: "convert a disk image, streaming with bounded memory (IN or OUT may be - for stdin/stdout; " +
			"stdin holds a streamOptimized VMDK or raw data)",
		Flags: diskConvertFlags,
	})
}

type diskConvertOptions struct {
	to      string
	vhdType string
	size    int64
	json    bool
}

func diskConvertFlags(fs *flag.FlagSet) func(context.Context, Env, []string) error {
	o := &diskConvertOptions{}
	fs.StringVar(&o.to, "to", "", "output format: raw, vmdk (streamOptimized) or vhd")
	fs.StringVar(&o.vhdType, "vhd-type", "dynamic", "VHD subformat: fixed or dynamic")
	fs.Int64Var(&o.size, "size", -1, "virtual size of a raw stream on stdin, in bytes; required for --to vmdk, "+
		"otherwise stdin is read to EOF")
	fs.BoolVar(&o.json, "json", false, "print a JSON summary on stdout (not with OUT -)")
	return o.run
}

// diskConvertResult is the --json summary.
type diskConvertResult struct {
	Input        string    `json:"input"`
	InputFormat  disk.Info `json:"inputInfo"`
	Output       string    `json:"output"`
	OutputFormat string    `json:"outputFormat"`
	BytesWritten int64     `json:"bytesWritten"`
}

func (o *diskConvertOptions) run(ctx context.Context, env Env, args []string) (err error) {
	if len(args) != 2 {
		return fmt.Errorf("want IN and OUT, got %d arguments: %w", len(args), ErrUsage)
	}
	in, out := args[0], args[1]
	outFormat := o.to
	switch o.to {
	case "raw", "vmdk":
	case "vhd":
		if o.vhdType != "fixed" && o.vhdType != "dynamic" {
			return fmt.Errorf("--vhd-type %q: want fixed or dynamic: %w", o.vhdType, ErrUsage)
		}
		outFormat = "vhd-" + o.vhdType
	case "":
		return fmt.Errorf("--to is required: %w", ErrUsage)
	default:
		return fmt.Errorf("--to %q: want raw, vmdk or vhd: %w", o.to, ErrUsage)
	}
	if o.json && out == "-" {
		return fmt.Errorf("--json prints on stdout, which OUT - already uses: %w", ErrUsage)
	}
	if in != "-" && out != "-" {
		if a, b := filepath.Clean(in), filepath.Clean(out); a == b {
			return fmt.Errorf("IN and OUT are the same file %s: %w", in, ErrUsage)
		}
	}
	if in != "-" && o.size >= 0 {
		return fmt.Errorf("--size applies only to a raw stream on stdin: %w", ErrUsage)
	}

	// Open the output first so a bad path fails before any reading.
	var w io.Writer = env.Stdout
	var file *os.File
	if out != "-" {
		file, err = os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
		if err != nil {
			return fmt.Errorf("convert %s: create output: %w", in, err)
		}
		defer func() {
			if cerr := file.Close(); cerr != nil && err == nil {
				err = fmt.Errorf("convert %s: close %s: %w", in, out, cerr)
			}
			if err != nil {
				os.Remove(out) // never leave a half-written image behind
			}
		}()
		w = file
	}
	// The writers emit many sector-sized pieces; batch them. Raw output to
	// a file bypasses the buffer so holes become seeks.
	bw := bufio.NewWriterSize(&ctxWriter{ctx: ctx, w: w}, 1<<20)
	var rawDst io.Writer = bw
	if file != nil {
		rawDst = &ctxFile{File: file, ctx: ctx}
	}

	res := diskConvertResult{Input: in, Output: out, OutputFormat: outFormat}
	if in == "-" {
		res.BytesWritten, res.InputFormat, err = o.fromStdin(env.Stdin, bw, rawDst)
	} else {
		res.BytesWritten, res.InputFormat, err = o.fromFile(in, bw, rawDst)
	}
	if err != nil {
		return fmt.Errorf("convert %s to %s: %w", in, outFormat, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("convert %s to %s: write %s: %w", in, outFormat, out, err)
	}
	if o.json {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	fmt.Fprintf(env.Stderr, "converted %s (%s, %s virtual) to %s %s: %d bytes written\n",
		in, res.InputFormat.Format, bytesIEC(res.InputFormat.VirtualSize), outFormat, out, res.BytesWritten)
	return nil
}

func (o *diskConvertOptions) fromFile(in string, w, rawDst io.Writer) (int64, disk.Info, error) {
	img, closer, err := disk.OpenFile(in)
	if err != nil {
		return 0, disk.Info{}, err
	}
	defer closer.Close()
	info := disk.Info{Format: img.Info().Format, VirtualSize: img.Size()}
	var n int64
	switch o.to {
	case "raw":
		n, err = disk.WriteRaw(rawDst, img)
	case "vmdk":
		n, err = disk.WriteStreamOptimized(w, img)
	case "vhd":
		n, err = disk.WriteVHD(w, img, o.vhdType == "dynamic")
	}
	return n, info, err
}

// fromStdin converts a stream: a streamOptimized VMDK (recognised by its
// magic) or raw data.
func (o *diskConvertOptions) fromStdin(stdin io.Reader, w, rawDst io.Writer) (int64, disk.Info, error) {
	// The header is read straight from stdin and handed back in front of
	// it (disk.Prefixed), not peeked through a bufio.Reader: from a pipe or
	// file the VMDK writer then reads the descriptor itself, with readv into
	// its grain buffers, and no copy between.
	head := make([]byte, 512)
	hn, err := io.ReadFull(stdin, head)
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return 0, disk.Info{}, fmt.Errorf("read stdin: %w", err)
	}
	head = head[:hn]
	if f, ok := stdin.(*os.File); ok {
		disk.WidenPipe(f)
	}
	pre := &disk.Prefixed{Head: head, R: stdin}
	// Every other reader gets the 1 MiB buffer it had.
	br := bufio.NewReaderSize(pre, 1<<20)
	var src io.Reader = br
	size := o.size
	info := disk.Info{Format: disk.Raw, VirtualSize: size}
	switch {
	case len(head) >= 4 && binary.LittleEndian.Uint32(head) == 0x564d444b:
		if o.size >= 0 {
			return 0, info, fmt.Errorf("--size does not apply to a VMDK stream, which states its own: %w", ErrUsage)
		}
		sr, err := disk.NewStreamOptimizedReader(br)
		if err != nil {
			return 0, info, err
		}
		src, size = sr, sr.Size()
		info = disk.Info{Format: disk.VMDK, Subformat: "streamOptimized", VirtualSize: size}
	case len(head) >= 8 && (string(head[:8]) == "vhdxfile" || string(head[:8]) == "conectix"):
		return 0, info, fmt.Errorf("a VHD or VHDX cannot be read from a stream; pass it as a file: %w", disk.ErrFormat)
	default:
		if o.size >= 0 {
			src = &exactReader{r: io.LimitReader(br, o.size), want: o.size}
		}
	}
	var n int64
	switch {
	case o.to == "raw":
		n, err = disk.WriteRawFrom(rawDst, src)
		if err == nil && size >= 0 && n != size {
			err = fmt.Errorf("stdin held %d bytes, want %d", n, size)
		}
	case o.to == "vmdk":
		if size < 0 {
			return 0, info, fmt.Errorf("a raw stream to vmdk needs --size (the header states the capacity before the data): %w", ErrUsage)
		}
		if info.Format == disk.Raw {
			// Nothing has been read through br: the writer reads stdin's
			// descriptor (behind the header) itself, exactly size bytes.
			src = pre
		}
		n, err = disk.WriteStreamOptimizedFrom(w, src, size)
		if errors.Is(err, io.ErrUnexpectedEOF) && info.Format == disk.Raw {
			err = fmt.Errorf("stdin ended before the %d bytes --size promised: %w", size, err)
		}
	case o.vhdType == "fixed":
		n, err = disk.WriteVHDFixedFrom(w, src, size)
	default:
		// A dynamic VHD's block table precedes the data but is known only
		// at the end: it is written in place, so OUT must be a file.
		ws, ok := rawDst.(io.WriteSeeker)
		if !ok {
			return 0, info, fmt.Errorf("a dynamic VHD from stdin needs OUT to be a file (its block table is written last, in place); use --vhd-type fixed for stdout: %w", ErrUsage)
		}
		if size < 0 {
			return 0, info, fmt.Errorf("a raw stream to a dynamic VHD needs --size: %w", ErrUsage)
		}
		n, err = disk.WriteVHDDynamicFrom(ws, src, size)
	}
	if info.VirtualSize < 0 && err == nil {
		info.VirtualSize = n
	}
	return n, info, err
}

// exactReader fails when the stream ends before want bytes.
type exactReader struct {
	r    io.Reader
	want int64
	got  int64
}

func (e *exactReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	e.got += int64(n)
	if err == io.EOF && e.got < e.want {
		return n, fmt.Errorf("stdin ended after %d of the %d bytes --size promised: %w", e.got, e.want, io.ErrUnexpectedEOF)
	}
	return n, err
}

// ctxWriter stops a conversion when ctx is cancelled (Ctrl-C).
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}

// ctxFile is an *os.File that stops on cancellation yet still lets the raw
// writers see a file they may seek in.
type ctxFile struct {
	*os.File
	ctx context.Context
}

func (c *ctxFile) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.File.Write(p)
}
