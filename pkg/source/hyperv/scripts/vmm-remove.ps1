# Remove-SCVMCheckpoint of checkpoint $In.id of VM $In.vmId, or of every
# checkpoint named exactly $In.name when the id is unknown. Gone is fine.
$vm = Get-SCVirtualMachine -ID $In.vmId
if ($vm) {
$cps = @(Get-SCVMCheckpoint -VM $vm | Where-Object { ($In.id -and [string]$_.CheckpointID -eq $In.id) -or (-not $In.id -and $_.Name -ceq $In.name) })
foreach ($cp in $cps) { $null = Remove-SCVMCheckpoint -VMCheckpoint $cp }
[pscustomobject]@{ Removed = $cps.Count }
}
