# The light listing of a poll: every VM's id with what hv-inventory says
# of it that shows without reading its disks' headers (the chains), its
# firmware settings or the guest's KVP items, the costly parts of
# hv-inventory: its name, owner node, state, hardware, checkpoint type,
# drives (where each is, its file, whether it is shared) and network
# adapters. A disk resized in place, a guest OS renamed, secure boot or
# the boot order changed does not show here (rehost lists in full now and
# then: docs/benchmarks.md says how often).
foreach ($vm in @(Get-VM)) {
$drives = foreach ($hd in @(Get-VMHardDiskDrive -VM $vm)) { '{0}{1}:{2} {3} {4} {5}' -f $hd.ControllerType, $hd.ControllerNumber, $hd.ControllerLocation, $hd.Path, $hd.DiskNumber, [bool]$hd.SupportPersistentReservations }
$nics = foreach ($n in @(Get-VMNetworkAdapter -VM $vm)) { '{0} {1} {2} {3}' -f $n.Name, $n.MacAddress, $n.SwitchName, $n.IsLegacy }
[pscustomobject]@{ Id = [string]$vm.Id; Name = $vm.Name; ComputerName = $vm.ComputerName; State = [string]$vm.State; Generation = $vm.Generation; Version = [string]$vm.Version; ProcessorCount = $vm.ProcessorCount; MemoryStartup = $vm.MemoryStartup; CheckpointType = [string]$vm.CheckpointType; Heartbeat = [string]$vm.Heartbeat; Drives = @($drives); Adapters = @($nics) }
}
