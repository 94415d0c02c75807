# The SCVMM checkpoints of VM $In.vmId whose name starts with $In.prefix.
$vm = Get-RehostVMMVM $In.vmId
foreach ($cp in @(Get-SCVMCheckpoint -VM $vm)) {
if ($cp.Name.StartsWith([string]$In.prefix, [StringComparison]::Ordinal)) {
[pscustomobject]@{ Id = [string]$cp.CheckpointID; Name = $cp.Name; VMId = [string]$vm.ID; Production = [bool]($cp.Description -like '*(production)*'); AddedTime = $cp.AddedTime.ToString('o') }
}
}
