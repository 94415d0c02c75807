# Connects the VMM cmdlets to the SCVMM server this runs on, and turns a
# VMM virtual hard disk into the chain shape the Hyper-V scripts return.
Import-Module virtualmachinemanager
$null = Get-SCVMMServer -ComputerName localhost
function Get-RehostVMMChain($vhd) {
$n = 0
while ($vhd -and $n -lt 64) {
[pscustomobject]@{ Path = $vhd.Location; VhdFormat = [string]$vhd.VHDFormatType; VhdType = [string]$vhd.VHDType; Size = $vhd.MaximumSize; FileSize = $vhd.Size; ParentPath = $vhd.ParentDisk.Location }
$vhd = $vhd.ParentDisk
$n++
}
}
function Get-RehostVMMVM($id) {
$vm = Get-SCVirtualMachine -ID $id
if (-not $vm) { Stop-Rehost 'RehostVMNotFound' 'ObjectNotFound' ('SCVMM has no VM with id {0}' -f $id) }
$vm
}
