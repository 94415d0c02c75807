// Package imagetest tests the built appliance: the OVA against govmomi's
// OVF parser and the vCenter simulator's importer, the VHD and VHDX
// against qemu-img, and the disk itself by booting it under qemu (TCG, no
// KVM needed) and talking to the connector it starts.
//
// The tests use the images in $REHOST_APPLIANCE_OUT (make appliance-test
// and make test set it after make appliance); without it they build the
// appliance into a temporary directory first.
package imagetest
