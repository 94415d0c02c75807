# The disks of checkpoint $In.id of VM $In.vmId: each file the checkpoint
# froze with its chain of parents, and the node running the VM now.
$vm = Get-VM -Id $In.vmId
$snap = @(Get-VMSnapshot -VM $vm | Where-Object { [string]$_.Id -eq $In.id })[0]
if (-not $snap) { Stop-Rehost 'RehostCheckpointNotFound' 'ObjectNotFound' ('checkpoint {0} of VM {1} does not exist' -f $In.id, $vm.Name) }
$disks = foreach ($hd in @($snap.HardDrives)) {
[pscustomobject]@{ ControllerType = [string]$hd.ControllerType; ControllerNumber = $hd.ControllerNumber; ControllerLocation = $hd.ControllerLocation; Path = $hd.Path; Chain = @(Get-RehostChain $hd.Path) }
}
[pscustomobject]@{ ComputerName = $vm.ComputerName; Status = [string]$vm.Status; HardDrives = @($disks) }
