# Converts the recovery checkpoint $In.id of VM $In.vmId into a reference
# point (its differencing disks merge, as when a checkpoint is removed),
# which keeps each disk's resilient change tracking id for the next run;
# once converted, the reference point named $In.name is answered again.
# Each disk's id is found by the virtual disk's instance id, the drive's
# with "L" for "D" at its end.
$vm = Get-VM -Id $In.vmId
$snap = @(Get-VMSnapshot -VM $vm | Where-Object { [string]$_.Id -eq $In.id })[0]
$sizes = @{}
$rp = $null
if ($snap) {
if ([string]$snap.SnapshotType -ne 'Recovery') { Stop-Rehost 'RehostNotRecovery' 'InvalidOperation' ('checkpoint {0} is a {1} checkpoint; only recovery checkpoints become reference points' -f $snap.Name, $snap.SnapshotType) }
foreach ($hd in @($snap.HardDrives)) { $sizes['{0}{1}:{2}' -f ([string]$hd.ControllerType).ToLower(), $hd.ControllerNumber, $hd.ControllerLocation] = [uint64](Get-VHD -Path $hd.Path).Size }
$vssd = @(Get-CimInstance -Namespace $RehostNS -ClassName Msvm_VirtualSystemSettingData -Filter ("VirtualSystemIdentifier='{0}'" -f $vm.Id) | Where-Object { [string]$_.InstanceID -eq ('Microsoft:' + [string]$snap.Id) })[0]
$svc = Get-CimInstance -Namespace $RehostNS -ClassName Msvm_VirtualSystemSnapshotService
$r = Invoke-CimMethod -InputObject $svc -MethodName ConvertToReferencePoint -Arguments @{ AffectedSnapshot = $vssd; ReferencePointSettings = '' }
$job = Wait-RehostJob $r 'ConvertToReferencePoint'
$rp = if ($job) { @($job | Get-CimAssociatedInstance -ResultClassName Msvm_VirtualSystemReferencePoint)[0] } else { $r.ResultingReferencePoint | Get-CimInstance }
} else {
$rp = @(Get-RehostReferencePoints $vm.Id | Where-Object { $_.ElementName -ceq $In.name })[0]
if (-not $rp) { Stop-Rehost 'RehostCheckpointNotFound' 'ObjectNotFound' ('VM {0} has neither a checkpoint {1} nor a reference point named {2}' -f $vm.Name, $In.id, $In.name) }
}
$ids = @($rp.VirtualDiskIdentifiers)
$rcts = @($rp.ResilientChangeTrackingIdentifiers)
$disks = foreach ($hd in @(Get-VMHardDiskDrive -VM $vm)) {
$at = '{0}{1}:{2}' -f ([string]$hd.ControllerType).ToLower(), $hd.ControllerNumber, $hd.ControllerLocation
$i = [array]::IndexOf($ids, ([string]$hd.Id -replace '\\D$', '\L'))
$size = $sizes[$at]
if (-not $size -and $hd.Path) { $size = [uint64](Get-VHD -Path $hd.Path).Size }
[pscustomobject]@{ Disk = $at; Rct = $(if ($i -ge 0) { $rcts[$i] } else { $null }); Size = $size }
}
[pscustomobject]@{ Id = [string]$rp.InstanceID; Name = [string]$rp.ElementName; Disks = @($disks) }
