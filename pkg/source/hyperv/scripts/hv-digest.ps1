# The light listing of a poll: every VM's id with what hv-inventory says
# of it that shows without reading its disks' headers (the chains) or the
# guest's KVP items, the costly parts of hv-inventory: its name, state,
# hardware, checkpoint type, drives (where each is, and its file) and
# network adapters. A disk resized in place, a guest OS renamed or secure
# boot changed does not show here (rehost lists in full now and then).
foreach ($vm in @(Get-VM)) {
$drives = foreach ($hd in @(Get-VMHardDiskDrive -VM $vm)) { '{0}{1}:{2} {3} {4}' -f $hd.ControllerType, $hd.ControllerNumber, $hd.ControllerLocation, $hd.Path, $hd.DiskNumber }
$nics = foreach ($n in @(Get-VMNetworkAdapter -VM $vm)) { '{0} {1} {2} {3}' -f $n.Name, $n.MacAddress, $n.SwitchName, $n.IsLegacy }
[pscustomobject]@{ Id = [string]$vm.Id; Name = $vm.Name; State = [string]$vm.State; Generation = $vm.Generation; Version = [string]$vm.Version; ProcessorCount = $vm.ProcessorCount; MemoryStartup = $vm.MemoryStartup; CheckpointType = [string]$vm.CheckpointType; Heartbeat = [string]$vm.Heartbeat; Drives = @($drives); Adapters = @($nics) }
}
