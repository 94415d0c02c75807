# Prelude of every rehost script run on a Hyper-V host or SCVMM server.
# The connector sends prelude + invocation + one script body as
# powershell.exe -EncodedCommand; the only variable part is the
# argument, a base64 literal of JSON that is decoded here and read as
# data ($In), never evaluated. Every script answers one line of JSON
# on stdout: {"ok":true,"result":[...]} or {"ok":false,"error":{...}},
# non-ASCII escaped so the console code page cannot garble it.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
function Write-RehostResult($ok, $v) {
if ($ok) { $o = @{ ok = $true; result = $v } }
else { $o = @{ ok = $false; error = @{ category = [string]$v.CategoryInfo.Category; id = [string]$v.FullyQualifiedErrorId; message = [string]$v.Exception.Message } } }
$j = ConvertTo-Json -InputObject $o -Depth 12 -Compress
[Console]::Out.Write([regex]::Replace($j, '[^\x00-\x7F]', { param($m) '\u{0:x4}' -f [int][char]$m.Value }))
}
# Stop raises a terminating error with an id the connector classifies.
function Stop-Rehost($id, $category, $message) {
Write-Error -ErrorId $id -Category $category -Message $message
}
# Get-RehostChain lists a virtual disk and its parents, newest first, as
# Get-VHD describes them.
function Get-RehostChain([string]$Path) {
$n = 0
while ($Path -and $n -lt 64) {
$v = Get-VHD -Path $Path
[pscustomobject]@{ Path = $v.Path; VhdFormat = [string]$v.VhdFormat; VhdType = [string]$v.VhdType; Size = $v.Size; FileSize = $v.FileSize; ParentPath = $v.ParentPath; LogicalSectorSize = $v.LogicalSectorSize; BlockSize = $v.BlockSize }
$Path = $v.ParentPath
$n++
}
}
