# A recovery checkpoint named $In.name of VM $In.vmId (configuration
# version 6.2 or later: Windows Server 2016 and later), unless a checkpoint
# of that name exists: the kind backups take, whose disks' changes since
# the last run resilient change tracking answers, and which becomes the
# next reference point. Application consistent for a running VM (VSS or
# fsfreeze in the guest), crash consistent when that fails, and the
# reason is returned; named, and marked when application consistent, in
# its settings. What the VM's disks forbid (pass-through, shared) or a
# merge under way the connector refuses before, from the inventory.
$vm = Get-VM -Id $In.vmId
$snap = @(Get-VMSnapshot -VM $vm | Where-Object { $_.Name -ceq $In.name })[0]
$fallback = $null
if (-not $snap) {
if ([version]$vm.Version -lt [version]'6.2') { Stop-Rehost 'RehostNoRct' 'InvalidOperation' ('VM {0} has configuration version {1}; recovery checkpoints need 6.2 or later' -f $vm.Name, $vm.Version) }
$cs = Get-CimInstance -Namespace $RehostNS -ClassName Msvm_ComputerSystem -Filter ("Name='{0}'" -f $vm.Id)
$svc = Get-CimInstance -Namespace $RehostNS -ClassName Msvm_VirtualSystemSnapshotService
$made = $null
$prod = $false
# Consistency 1: application consistent; 2: crash consistent.
foreach ($level in @(1, 2)) {
if ($made -or ($level -eq 1 -and $vm.State -ne 'Running')) { continue }
$set = Get-CimClass -Namespace $RehostNS -ClassName Msvm_VirtualSystemSnapshotSettingData | New-CimInstance -ClientOnly -Property @{ ConsistencyLevel = [uint16]$level; IgnoreNonSnapshottableDisks = $false }
try {
$r = Invoke-CimMethod -InputObject $svc -MethodName CreateSnapshot -Arguments @{ AffectedSystem = $cs; SnapshotSettings = (ConvertTo-RehostEmbedded $set); SnapshotType = [uint16]32768 }
$job = Wait-RehostJob $r 'CreateSnapshot'
$made = if ($job) { @($job | Get-CimAssociatedInstance -ResultClassName Msvm_VirtualSystemSettingData)[0] } else { $r.ResultingSnapshot | Get-CimInstance }
$prod = $level -eq 1
} catch { if ($level -eq 1) { $fallback = $_.Exception.Message } else { throw } }
}
# Named (and marked when application consistent) in its settings.
$made.ElementName = [string]$In.name
if ($prod) { $made.Notes = @($RehostProduction) }
$mgmt = Get-CimInstance -Namespace $RehostNS -ClassName Msvm_VirtualSystemManagementService
$null = Wait-RehostJob (Invoke-CimMethod -InputObject $mgmt -MethodName ModifySystemSettings -Arguments @{ SystemSettings = (ConvertTo-RehostEmbedded $made) }) 'ModifySystemSettings'
$snap = Get-VMSnapshot -Id ([string]$made.InstanceID -replace '^Microsoft:', '')
}
[pscustomobject]@{ Id = [string]$snap.Id; Name = $snap.Name; VMId = [string]$vm.Id; State = [string]$snap.State; VMState = [string]$vm.State; SnapshotType = [string]$snap.SnapshotType; Production = [bool](@($snap.Notes) -contains $RehostProduction); CreationTime = $snap.CreationTime.ToString('o'); Fallback = $fallback }
