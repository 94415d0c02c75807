# The disks of checkpoint $In.id of VM $In.vmId as SCVMM sees them, and
# the host running the VM now. The checkpoint must be the VM's newest:
# then each disk's current file is the differencing disk the checkpoint
# started and its parent is the checkpoint's frozen file.
$vm = Get-RehostVMMVM $In.vmId
$cps = @(Get-SCVMCheckpoint -VM $vm | Sort-Object AddedTime)
$cp = @($cps | Where-Object { [string]$_.CheckpointID -eq $In.id })[0]
if (-not $cp) { Stop-Rehost 'RehostCheckpointNotFound' 'ObjectNotFound' ('checkpoint {0} of VM {1} does not exist' -f $In.id, $vm.Name) }
if ([string]$cps[-1].CheckpointID -ne $In.id) { Stop-Rehost 'RehostCheckpointNotNewest' 'InvalidOperation' ('checkpoint {0} was taken after {1}; the point-in-time disks of {1} cannot be told apart' -f $cps[-1].Name, $cp.Name) }
$disks = foreach ($d in @($vm.VirtualDiskDrives)) {
[pscustomobject]@{ BusType = [string]$d.BusType; Bus = $d.Bus; Lun = $d.Lun; Location = $d.VirtualHardDisk.ParentDisk.Location; Chain = @(Get-RehostVMMChain $d.VirtualHardDisk.ParentDisk) }
}
[pscustomobject]@{ VMHost = [string]$vm.VMHost.Name; StatusString = [string]$vm.StatusString; VirtualDiskDrives = @($disks) }
