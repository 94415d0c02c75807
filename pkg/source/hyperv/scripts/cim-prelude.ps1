# Prelude of the scripts that reach Hyper-V's WMI provider themselves,
# for what the cmdlets do not: recovery checkpoints, resilient change
# tracking, reference points (Windows Server 2016 and later).
# The WMI namespace of Hyper-V.
$RehostNS = 'root\virtualization\v2'
# Wait-RehostJob waits for the job a WMI method started (4096) and stops
# on its failure, naming what; it answers the finished job, or nothing
# for a method that completed at once (0).
function Wait-RehostJob($r, [string]$what) {
if ($r.ReturnValue -eq 0) { return }
if ($r.ReturnValue -ne 4096) { Stop-Rehost 'RehostWmiFailed' 'InvalidResult' ('{0} returned {1}' -f $what, $r.ReturnValue) }
$job = $r.Job | Get-CimInstance
while ($job.JobState -eq 3 -or $job.JobState -eq 4) {
Start-Sleep -Milliseconds 250
$job = $job | Get-CimInstance
}
if ($job.JobState -ne 7) { Stop-Rehost 'RehostWmiFailed' 'InvalidResult' ('{0} failed: {1} (error {2})' -f $what, $job.ErrorDescription, $job.ErrorCode) }
$job
}
# ConvertTo-RehostEmbedded is a CIM instance as the embedded-instance
# text WMI methods take.
function ConvertTo-RehostEmbedded($inst) {
[Text.Encoding]::Unicode.GetString([Microsoft.Management.Infrastructure.Serialization.CimSerializer]::Create().Serialize($inst, [Microsoft.Management.Infrastructure.Serialization.InstanceSerializationOptions]::None))
}
# The note on a recovery checkpoint made application-consistent, so that
# finding it again says so.
$RehostProduction = 'rehost: production checkpoint'
# Get-RehostReferencePoints lists the reference points of VM $vmId.
function Get-RehostReferencePoints([string]$vmId) {
@(Get-CimInstance -Namespace $RehostNS -ClassName Msvm_VirtualSystemReferencePoint -Filter ("VirtualSystemIdentifier='{0}'" -f $vmId) -ErrorAction SilentlyContinue)
}
