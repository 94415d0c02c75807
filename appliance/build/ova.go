package build

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/template"
	"time"

	"github.com/rehost/rehost/pkg/disk"
)

// The appliance's virtual hardware, as the OVF declares it.
const (
	CPUs        = 2
	MemoryMiB   = 4096
	NetworkName = "VM Network"
	ovfName     = "rehost-connector.ovf"
	mfName      = "rehost-connector.mf"
	vmdkName    = "rehost-connector-disk1.vmdk"
)

// ovfTemplate is an OVF 1.0 envelope: one virtual system with its product
// section, 2 vCPUs, 4 GiB, a paravirtual SCSI controller holding the disk,
// a VMXNET3 NIC on NetworkName, a video card and a serial port for the
// console. Items list their rasd elements in the schema's (alphabetical)
// order.
var ovfTemplate = template.Must(template.New("ovf").Parse(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
    <File ovf:href="{{.Disk}}" ovf:id="file1" ovf:size="{{.DiskFileSize}}"/>
  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
    <Disk ovf:capacity="{{.Capacity}}" ovf:capacityAllocationUnits="byte" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized" ovf:populatedSize="{{.Populated}}"/>
  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="{{.Network}}">
      <Description>The network from which the connector reaches the hypervisor, AWS and its users</Description>
    </Network>
  </NetworkSection>
  <VirtualSystem ovf:id="rehost-connector">
    <Info>The rehost connector appliance</Info>
    <Name>rehost-connector</Name>
    <ProductSection>
      <Info>Information about the installed software</Info>
      <Product>rehost connector</Product>
      <Vendor>rehost</Vendor>
      <Version>{{.Version}}</Version>
      <FullVersion>{{.Version}}</FullVersion>
      <ProductUrl>https://github.com/rehost/rehost</ProductUrl>
    </ProductSection>
    <AnnotationSection>
      <Info>A description of the appliance</Info>
      <Annotation>Agentless server migration to AWS. After power-on the console shows the address of the setup page (https) and its certificate fingerprint.</Annotation>
    </AnnotationSection>
    <OperatingSystemSection ovf:id="101" vmw:osType="other4xLinux64Guest">
      <Info>The kind of installed guest operating system</Info>
      <Description>Linux 6.1 (64-bit)</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>rehost-connector</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of virtual CPUs</rasd:Description>
        <rasd:ElementName>{{.CPUs}} virtual CPUs</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>{{.CPUs}}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory size</rasd:Description>
        <rasd:ElementName>{{.MemoryMiB}} MB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>{{.MemoryMiB}}</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>0</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk 1</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource>
        <rasd:InstanceID>4</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
      <Item>
        <rasd:AddressOnParent>7</rasd:AddressOnParent>
        <rasd:AutomaticAllocation>true</rasd:AutomaticAllocation>
        <rasd:Connection>{{.Network}}</rasd:Connection>
        <rasd:Description>VMXNET3 ethernet adapter on "{{.Network}}"</rasd:Description>
        <rasd:ElementName>Network adapter 1</rasd:ElementName>
        <rasd:InstanceID>5</rasd:InstanceID>
        <rasd:ResourceSubType>VmxNet3</rasd:ResourceSubType>
        <rasd:ResourceType>10</rasd:ResourceType>
      </Item>
      <Item ovf:required="false">
        <rasd:AutomaticAllocation>false</rasd:AutomaticAllocation>
        <rasd:ElementName>Video card</rasd:ElementName>
        <rasd:InstanceID>6</rasd:InstanceID>
        <rasd:ResourceType>24</rasd:ResourceType>
      </Item>
      <vmw:Config ovf:required="false" vmw:key="firmware" vmw:value="efi"/>
      <vmw:Config ovf:required="false" vmw:key="bootOptions.efiSecureBootEnabled" vmw:value="true"/>
    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`))

type ovfParams struct {
	Disk                   string
	DiskFileSize, Capacity int64
	Populated              int64
	Network, Version       string
	CPUs, MemoryMiB        int
}

func xmlText(s string) string {
	var b bytes.Buffer
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// writeContainers writes the OVA, the fixed VHD and the VHDX from the raw
// disk.
func writeContainers(o Options, raw string) ([]string, error) {
	f, err := os.Open(raw)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := st.Size()
	src := disk.NewRaw(f, size)
	var out []string

	// OVA: the VMDK first (the manifest needs its sum), then the tar.
	vmdk := filepath.Join(o.Out, ".disk1.vmdk")
	defer os.Remove(vmdk)
	if err := writeFileWith(vmdk, func(w io.Writer) error {
		_, err := disk.WriteStreamOptimized(w, src)
		return err
	}); err != nil {
		return nil, fmt.Errorf("write the OVA's disk: %w", err)
	}
	vst, err := os.Stat(vmdk)
	if err != nil {
		return nil, err
	}
	populated := int64(0)
	for _, e := range src.Extents() {
		populated += e.Length
	}
	var desc bytes.Buffer
	if err := ovfTemplate.Execute(&desc, ovfParams{
		Disk: vmdkName, DiskFileSize: vst.Size(), Capacity: size, Populated: populated,
		Network: xmlText(NetworkName), Version: xmlText(o.Version), CPUs: CPUs, MemoryMiB: MemoryMiB,
	}); err != nil {
		return nil, err
	}
	ova := filepath.Join(o.Out, OVAFile)
	if err := writeOVA(ova, desc.Bytes(), vmdk, o.Epoch); err != nil {
		return nil, fmt.Errorf("write %s: %w", ova, err)
	}
	out = append(out, ova)

	vhd := filepath.Join(o.Out, VHDFile)
	if err := writeFileWith(vhd, func(w io.Writer) error {
		_, err := disk.WriteVHDFixedFromID(w, io.NewSectionReader(f, 0, size), size, uuidFrom(o.Version, "vhd"), o.Epoch)
		return err
	}); err != nil {
		return nil, err
	}
	out = append(out, vhd)

	vhdx := filepath.Join(o.Out, VHDXFile)
	if err := writeFileWith(vhdx, func(w io.Writer) error {
		_, err := disk.WriteVHDX(w, src, disk.VHDXOptions{
			FileWrite: uuidFrom(o.Version, "vhdx file write"),
			DataWrite: uuidFrom(o.Version, "vhdx data write"),
			Page83:    uuidFrom(o.Version, "vhdx page83"),
			Creator:   "rehost appliance build " + o.Version,
		})
		return err
	}); err != nil {
		return nil, err
	}
	return append(out, vhdx), nil
}

// writeOVA writes the OVA as OVF 1.0 asks: a ustar archive with the
// descriptor first, the manifest (SHA-256 of the other files) second, then
// the disk; fixed owner and time stamps.
func writeOVA(path string, desc []byte, vmdk string, epoch time.Time) error {
	vsum, err := fileSHA256(vmdk)
	if err != nil {
		return err
	}
	dsum := sha256.Sum256(desc)
	mf := fmt.Sprintf("SHA256(%s)= %s\nSHA256(%s)= %s\n", ovfName, hex.EncodeToString(dsum[:]), vmdkName, vsum)
	return writeFileWith(path, func(w io.Writer) error {
		tw := tar.NewWriter(w)
		hdr := func(name string, size int64) *tar.Header {
			return &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, ModTime: epoch, Format: tar.FormatUSTAR}
		}
		for _, f := range []struct {
			name string
			b    []byte
		}{{ovfName, desc}, {mfName, []byte(mf)}} {
			if err := tw.WriteHeader(hdr(f.name, int64(len(f.b)))); err != nil {
				return err
			}
			if _, err := tw.Write(f.b); err != nil {
				return err
			}
		}
		in, err := os.Open(vmdk)
		if err != nil {
			return err
		}
		defer in.Close()
		st, err := in.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(hdr(vmdkName, st.Size())); err != nil {
			return err
		}
		if _, err := io.Copy(tw, in); err != nil {
			return err
		}
		return tw.Close()
	})
}

// writeFileWith creates path and lets write fill it through a buffer.
func writeFileWith(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}
