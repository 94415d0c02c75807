# The checkpoints of VM $In.vmId whose name starts with $In.prefix, and
# its reference points (Base) so named: a kept checkpoint becomes one, and
# is found again by its name where the host gives it the checkpoint's.
$vm = Get-VM -Id $In.vmId
foreach ($s in @(Get-VMSnapshot -VM $vm)) {
if ($s.Name.StartsWith([string]$In.prefix, [StringComparison]::Ordinal)) {
[pscustomobject]@{ Id = [string]$s.Id; Name = $s.Name; VMId = [string]$vm.Id; State = [string]$s.State; VMState = [string]$vm.State; SnapshotType = [string]$s.SnapshotType; Production = [bool](@($s.Notes) -contains $RehostProduction); CreationTime = $s.CreationTime.ToString('o') }
}
}
foreach ($rp in Get-RehostReferencePoints $vm.Id) {
if ($rp.ElementName -and ([string]$rp.ElementName).StartsWith([string]$In.prefix, [StringComparison]::Ordinal)) {
[pscustomobject]@{ Id = [string]$rp.InstanceID; Name = [string]$rp.ElementName; VMId = [string]$vm.Id; State = 'Off'; VMState = [string]$vm.State; SnapshotType = 'ReferencePoint'; Base = $true }
}
}
