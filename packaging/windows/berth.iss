; Inno Setup script: Berth for Windows (the engine runs in a Linux VM under QEMU, accelerated by WHPX).
; Build on Windows after packaging/build-bundle.sh:  iscc packaging\windows\berth.iss
#define AppName "Berth"
#define AppVersion "0.1.0"
#define BundleDir "..\..\dist\berth"

[Setup]
AppId={{6C1F7A53-2B0E-4E86-9F0B-8E2D3B1A9C41}
AppName={#AppName}
AppVersion={#AppVersion}
AppPublisher=Berth developers
DefaultDirName={autopf}\Berth
DefaultGroupName=Berth
OutputBaseFilename=Berth-{#AppVersion}-setup
Compression=lzma2
SolidCompression=yes
ArchitecturesInstallIn64BitMode=x64compatible
ArchitecturesAllowed=x64compatible
PrivilegesRequired=admin
WizardStyle=modern
UninstallDisplayIcon={app}\berth-desktop.exe

[Tasks]
Name: "autostart"; Description: "Start Berth when I sign in"; GroupDescription: "Startup:"
Name: "desktopicon"; Description: "Create a desktop shortcut"; GroupDescription: "Shortcuts:"; Flags: unchecked

[Files]
Source: "{#BundleDir}\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\Berth"; Filename: "{app}\berth-desktop.exe"
Name: "{group}\Uninstall Berth"; Filename: "{uninstallexe}"
Name: "{autodesktop}\Berth"; Filename: "{app}\berth-desktop.exe"; Tasks: desktopicon
Name: "{userstartup}\Berth"; Filename: "{app}\berth-desktop.exe"; Parameters: "--hidden"; Tasks: autostart

[Registry]
; berth.exe on the PATH of new terminals.
Root: HKLM; Subkey: "SYSTEM\CurrentControlSet\Control\Session Manager\Environment"; ValueType: expandsz; \
  ValueName: "Path"; ValueData: "{olddata};{app}"; Check: NeedsAddPath(ExpandConstant('{app}'))

[Run]
Filename: "{app}\berth-desktop.exe"; Description: "Start Berth"; Flags: nowait postinstall skipifsilent

[UninstallDelete]
; The app's own settings; the VM's disk in %USERPROFILE%\.berth is kept (delete it to free the space).
Type: filesandordirs; Name: "{localappdata}\Berth"

[Code]
function QemuFound(): Boolean;
begin
  Result := FileExists(ExpandConstant('{commonpf}\qemu\qemu-system-x86_64.exe'))
    or RegKeyExists(HKLM, 'SOFTWARE\QEMU');
end;

function NeedsAddPath(Dir: string): Boolean;
var
  Paths: string;
begin
  if not RegQueryStringValue(HKLM, 'SYSTEM\CurrentControlSet\Control\Session Manager\Environment', 'Path', Paths) then
    Result := True
  else
    Result := Pos(';' + Uppercase(Dir) + ';', ';' + Uppercase(Paths) + ';') = 0;
end;

function InitializeSetup(): Boolean;
begin
  Result := True;
  if not QemuFound() then
    MsgBox('Berth runs its engine in a small Linux VM with QEMU, which was not found.' + #13#10 +
           'Install QEMU for Windows (https://www.qemu.org/download/#windows) into "C:\Program Files\qemu",' + #13#10 +
           'then start Berth. Setup continues.', mbInformation, MB_OK);
end;
