# Inventory through SCVMM: every VM it manages (or $In.vmId), with the
# host running it now, its host group, disks with their chains, adapters.
$vms = if ($In.vmId) { @(Get-RehostVMMVM $In.vmId) } else { @(Get-SCVirtualMachine) }
foreach ($vm in $vms) {
$disks = foreach ($d in @($vm.VirtualDiskDrives)) {
[pscustomobject]@{ BusType = [string]$d.BusType; Bus = $d.Bus; Lun = $d.Lun; Location = $d.VirtualHardDisk.Location; PassThroughDisk = [string]$d.PassThroughDisk; IsShared = [bool]($d.VirtualHardDisk.IsShared -or $d.VirtualHardDisk.Location -like '*.vhds'); Chain = @(Get-RehostVMMChain $d.VirtualHardDisk) }
}
$nics = foreach ($n in @($vm.VirtualNetworkAdapters)) {
[pscustomobject]@{ Name = $n.Name; MACAddress = $n.MACAddress; VMNetwork = [string]$n.VMNetwork; VirtualNetwork = [string]$n.VirtualNetwork; VirtualNetworkAdapterType = [string]$n.VirtualNetworkAdapterType }
}
[pscustomobject]@{ ID = [string]$vm.ID; VMId = [string]$vm.VMId; Name = $vm.Name; VMHost = [string]$vm.VMHost.Name; HostGroupPath = [string]$vm.HostGroupPath; Location = $vm.Location; Generation = $vm.Generation; CPUCount = $vm.CPUCount; Memory = $vm.Memory; DynamicMemoryEnabled = [bool]$vm.DynamicMemoryEnabled; Status = [string]$vm.Status; StatusString = [string]$vm.StatusString; OperatingSystem = [string]$vm.OperatingSystem.Name; SecureBootEnabled = [bool]$vm.SecureBootEnabled; IsHighlyAvailable = [bool]$vm.IsHighlyAvailable; CheckpointType = [string]$vm.CheckpointType; VirtualDiskDrives = @($disks); VirtualNetworkAdapters = @($nics) }
}
