# DestroyReferencePoint of the reference point $In.id of VM $In.vmId or,
# when the id is unknown, of those named exactly $In.name: a base the
# next run no longer needs. A VM or reference point already gone is not
# an error.
$vm = @(Get-VM -ErrorAction SilentlyContinue | Where-Object { [string]$_.Id -eq $In.vmId })[0]
if ($vm) {
$rps = @(Get-RehostReferencePoints $vm.Id | Where-Object { ($In.id -and [string]$_.InstanceID -eq $In.id) -or (-not $In.id -and $_.ElementName -ceq $In.name) })
$svc = Get-CimInstance -Namespace $RehostNS -ClassName Msvm_VirtualSystemReferencePointService
foreach ($rp in $rps) { $null = Wait-RehostJob (Invoke-CimMethod -InputObject $svc -MethodName DestroyReferencePoint -Arguments @{ AffectedReferencePoint = $rp }) 'DestroyReferencePoint' }
[pscustomobject]@{ Removed = $rps.Count }
}
