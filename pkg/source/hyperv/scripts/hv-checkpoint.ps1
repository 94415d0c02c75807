# Checkpoint-VM named $In.name of VM $In.vmId, unless one of that name
# exists. A running VM gets a production checkpoint (VSS or fsfreeze in
# the guest); when that fails (no integration services) a standard one,
# and the reason is returned. The VM's own checkpoint setting is put back.
$vm = Get-VM -Id $In.vmId
$snap = @(Get-VMSnapshot -VM $vm | Where-Object { $_.Name -ceq $In.name })[0]
$fallback = $null
if (-not $snap) {
if ($vm.Status -like '*Merg*') { Stop-Rehost 'RehostMergeInProgress' 'ResourceBusy' ('a checkpoint merge is in progress ({0})' -f $vm.Status) }
foreach ($hd in @(Get-VMHardDiskDrive -VM $vm)) {
$at = '{0} {1}:{2}' -f $hd.ControllerType, $hd.ControllerNumber, $hd.ControllerLocation
if ($hd.DiskNumber -or -not $hd.Path) { Stop-Rehost 'RehostPassThroughDisk' 'InvalidOperation' ('disk {0} is a pass-through disk (physical disk {1})' -f $at, $hd.DiskNumber) }
if ($hd.SupportPersistentReservations -or $hd.Path -like '*.vhds') { Stop-Rehost 'RehostSharedDisk' 'InvalidOperation' ('disk {0} ({1}) is a shared virtual disk' -f $at, $hd.Path) }
}
$type = [string]$vm.CheckpointType
if ($type -eq 'Disabled') { Stop-Rehost 'RehostCheckpointsDisabled' 'InvalidOperation' 'checkpoints are disabled for this VM (CheckpointType Disabled)' }
try {
if ($type -and $vm.State -eq 'Running') {
Set-VM -VM $vm -CheckpointType ProductionOnly
try { Checkpoint-VM -VM $vm -SnapshotName $In.name } catch { $fallback = $_.Exception.Message }
}
if ($fallback -or -not $type -or $vm.State -ne 'Running') {
if ($type) { Set-VM -VM $vm -CheckpointType Standard }
Checkpoint-VM -VM $vm -SnapshotName $In.name
}
} finally {
if ($type) { Set-VM -VM $vm -CheckpointType $type }
}
$snap = @(Get-VMSnapshot -VM $vm | Where-Object { $_.Name -ceq $In.name })[0]
}
[pscustomobject]@{ Id = [string]$snap.Id; Name = $snap.Name; VMId = [string]$vm.Id; State = [string]$snap.State; VMState = [string]$vm.State; SnapshotType = [string]$snap.SnapshotType; CreationTime = $snap.CreationTime.ToString('o'); Fallback = $fallback }
