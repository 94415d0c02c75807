# The checkpoints of VM $In.vmId whose name starts with $In.prefix.
$vm = Get-VM -Id $In.vmId
foreach ($s in @(Get-VMSnapshot -VM $vm)) {
if ($s.Name.StartsWith([string]$In.prefix, [StringComparison]::Ordinal)) {
[pscustomobject]@{ Id = [string]$s.Id; Name = $s.Name; VMId = [string]$vm.Id; State = [string]$s.State; VMState = [string]$vm.State; SnapshotType = [string]$s.SnapshotType; CreationTime = $s.CreationTime.ToString('o') }
}
}
