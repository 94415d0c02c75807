# Inventory of the Hyper-V host: every VM, or the one $In.vmId names,
# with its firmware, disks (each with its chain), network adapters,
# owner node and guest OS (from the KVP exchange integration service).
# What one VM's broken part (a missing disk file, a guest's garbled KVP
# item) cannot answer is left empty rather than failing the whole list.
$kvp = @{}
foreach ($k in @(Get-CimInstance -Namespace root/virtualization/v2 -ClassName Msvm_KvpExchangeComponent -ErrorAction SilentlyContinue)) {
foreach ($item in @($k.GuestIntrinsicExchangeItems)) {
try {
$x = ([xml]$item).INSTANCE.PROPERTY
if (($x | Where-Object Name -eq 'Name').VALUE -eq 'OSName') { $kvp[[string]$k.SystemName] = ($x | Where-Object Name -eq 'Data').VALUE }
} catch { }
}
}
$vms = if ($In.vmId) { @(Get-VM -Id $In.vmId) } else { @(Get-VM) }
foreach ($vm in $vms) {
$fw = $null
$boot = $null
if ($vm.Generation -eq 2) {
$fw = Get-VMFirmware -VM $vm
$d = @($fw.BootOrder | Where-Object { $_.BootType -eq 'Drive' -and $_.Device.ControllerType -and $_.Device.Path })
if ($d) { $boot = '{0}{1}:{2}' -f $d[0].Device.ControllerType, $d[0].Device.ControllerNumber, $d[0].Device.ControllerLocation }
}
$disks = foreach ($hd in @(Get-VMHardDiskDrive -VM $vm)) {
[pscustomobject]@{ ControllerType = [string]$hd.ControllerType; ControllerNumber = $hd.ControllerNumber; ControllerLocation = $hd.ControllerLocation; Path = $hd.Path; DiskNumber = $hd.DiskNumber; SupportPersistentReservations = [bool]$hd.SupportPersistentReservations; Chain = @(if ($hd.Path -and -not $hd.DiskNumber) { try { Get-RehostChain $hd.Path } catch { } }) }
}
$nics = foreach ($n in @(Get-VMNetworkAdapter -VM $vm)) {
[pscustomobject]@{ Name = $n.Name; MacAddress = $n.MacAddress; SwitchName = $n.SwitchName; IsLegacy = [bool]$n.IsLegacy }
}
[pscustomobject]@{ Id = [string]$vm.Id; Name = $vm.Name; ComputerName = $vm.ComputerName; Path = $vm.Path; Generation = $vm.Generation; Version = [string]$vm.Version; State = [string]$vm.State; Status = [string]$vm.Status; ProcessorCount = $vm.ProcessorCount; MemoryStartup = $vm.MemoryStartup; DynamicMemoryEnabled = [bool]$vm.DynamicMemoryEnabled; Heartbeat = [string]$vm.Heartbeat; IntegrationServicesState = [string]$vm.IntegrationServicesState; IsClustered = [bool]$vm.IsClustered; CheckpointType = [string]$vm.CheckpointType; SecureBoot = [string]$fw.SecureBoot; SecureBootTemplate = [string]$fw.SecureBootTemplate; BootDisk = $boot; GuestOS = $kvp[[string]$vm.Id]; HardDrives = @($disks); NetworkAdapters = @($nics) }
}
