# New-SCVMCheckpoint named $In.name of VM $In.vmId unless one of that name
# exists; production first for a running VM, standard when that fails. The
# description says which, so that finding it again after a crash does too.
$vm = Get-RehostVMMVM $In.vmId
$cp = @(Get-SCVMCheckpoint -VM $vm | Where-Object { $_.Name -ceq $In.name })[0]
$fallback = $null
$desc = 'rehost replication checkpoint ({0}); removed by rehost when the disks are copied'
if (-not $cp) {
if ($vm.StatusString -like '*Merg*') { Stop-Rehost 'RehostMergeInProgress' 'ResourceBusy' ('a checkpoint merge is in progress ({0})' -f $vm.StatusString) }
foreach ($d in @($vm.VirtualDiskDrives)) {
$at = '{0} {1}:{2}' -f $d.BusType, $d.Bus, $d.Lun
if ($d.PassThroughDisk -or -not $d.VirtualHardDisk) { Stop-Rehost 'RehostPassThroughDisk' 'InvalidOperation' ('disk {0} is a pass-through disk ({1})' -f $at, $d.PassThroughDisk) }
if ($d.VirtualHardDisk.IsShared -or $d.VirtualHardDisk.Location -like '*.vhds') { Stop-Rehost 'RehostSharedDisk' 'InvalidOperation' ('disk {0} ({1}) is a shared virtual disk' -f $at, $d.VirtualHardDisk.Location) }
}
$type = [string]$vm.CheckpointType
if ($type -eq 'Disabled') { Stop-Rehost 'RehostCheckpointsDisabled' 'InvalidOperation' 'checkpoints are disabled for this VM (CheckpointType Disabled)' }
try {
if ($type -and [string]$vm.Status -eq 'Running') {
$null = Set-SCVirtualMachine -VM $vm -CheckpointType ProductionOnly
try { $cp = New-SCVMCheckpoint -VM $vm -Name $In.name -Description ($desc -f 'production') } catch { $fallback = $_.Exception.Message }
}
if (-not $cp) {
if ($type) { $null = Set-SCVirtualMachine -VM $vm -CheckpointType Standard }
$cp = New-SCVMCheckpoint -VM $vm -Name $In.name -Description ($desc -f 'standard')
}
} finally {
if ($type) { $null = Set-SCVirtualMachine -VM $vm -CheckpointType $type }
}
}
[pscustomobject]@{ Id = [string]$cp.CheckpointID; Name = $cp.Name; VMId = [string]$vm.ID; Production = [bool]($cp.Description -like '*(production)*'); Fallback = $fallback; AddedTime = $cp.AddedTime.ToString('o') }
