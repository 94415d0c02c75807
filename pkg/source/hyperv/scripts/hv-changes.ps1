# The areas of disk $In.disk ("scsi0:1": controller type, number and
# location) of checkpoint $In.id of VM $In.vmId that changed since the
# resilient change tracking id $In.since, from byte $In.offset on:
# Msvm_ImageManagementService.GetVirtualDiskChanges on the file the
# checkpoint froze, asked again from where it stopped until $In.limit
# areas or the end of the disk. Next is where the next page starts. A
# refused id (tracking reset, the disk replaced) is RehostRctRefused.
$vm = Get-VM -Id $In.vmId
$snap = @(Get-VMSnapshot -VM $vm | Where-Object { [string]$_.Id -eq $In.id })[0]
if (-not $snap) { Stop-Rehost 'RehostCheckpointNotFound' 'ObjectNotFound' ('checkpoint {0} of VM {1} does not exist' -f $In.id, $vm.Name) }
$hd = @($snap.HardDrives | Where-Object { ('{0}{1}:{2}' -f ([string]$_.ControllerType).ToLower(), $_.ControllerNumber, $_.ControllerLocation) -eq $In.disk })[0]
if (-not $hd) { Stop-Rehost 'RehostDiskNotFound' 'ObjectNotFound' ('checkpoint {0} of VM {1} has no disk {2}' -f $snap.Name, $vm.Name, $In.disk) }
$size = [uint64](Get-VHD -Path $hd.Path).Size
$ims = Get-CimInstance -Namespace $RehostNS -ClassName Msvm_ImageManagementService
$off = [uint64]$In.offset
$offsets = New-Object Collections.Generic.List[uint64]
$lengths = New-Object Collections.Generic.List[uint64]
while ($off -lt $size -and $offsets.Count -lt [int]$In.limit) {
try {
$r = Invoke-CimMethod -InputObject $ims -MethodName GetVirtualDiskChanges -Arguments @{ Path = $hd.Path; LimitId = [string]$In.since; TargetSnapshotId = ''; ByteOffset = $off; ByteLength = [uint64]($size - $off) }
$null = Wait-RehostJob $r 'GetVirtualDiskChanges'
} catch {
Stop-Rehost 'RehostRctRefused' 'InvalidData' ('Hyper-V cannot list the changes of {0} since {1}: {2}' -f $hd.Path, $In.since, $_.Exception.Message)
}
foreach ($o in @($r.ChangedByteOffsets)) { $offsets.Add([uint64]$o) }
foreach ($l in @($r.ChangedByteLengths)) { $lengths.Add([uint64]$l) }
if ([uint64]$r.ProcessedByteLength -eq 0) { break }
$off += [uint64]$r.ProcessedByteLength
}
[pscustomobject]@{ Size = $size; Next = [math]::Min($off, $size); Offsets = @($offsets); Lengths = @($lengths) }
