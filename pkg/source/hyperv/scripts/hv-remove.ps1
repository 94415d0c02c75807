# Remove-VMSnapshot of the checkpoint $In.id of VM $In.vmId, or, when the
# id is unknown (a crash before it was recorded), every checkpoint named
# exactly $In.name. Its differencing disks merge into their parents. A
# VM or checkpoint already gone is not an error.
$vm = @(Get-VM -ErrorAction SilentlyContinue | Where-Object { [string]$_.Id -eq $In.vmId })[0]
if ($vm) {
$snaps = @(Get-VMSnapshot -VM $vm | Where-Object { ($In.id -and [string]$_.Id -eq $In.id) -or (-not $In.id -and $_.Name -ceq $In.name) })
foreach ($s in $snaps) { Remove-VMSnapshot -VMSnapshot $s -Confirm:$false }
[pscustomobject]@{ Removed = $snaps.Count }
}
