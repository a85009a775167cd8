//! A throwaway Active Directory domain: Samba's AD domain controller, provisioned into a
//! temporary folder, serving LDAP and LDAPS on 127.0.0.1 (the standard ports: Samba has no
//! setting for them, so one domain runs at a time).
//!
//! `scripts/test.sh` installs Debian's `samba` and `samba-ad-provision` packages.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The realm of the test domain.
pub const REALM: &str = "CAIRN.TEST";
/// Its NetBIOS name.
pub const NETBIOS: &str = "CAIRN";
/// Its base DN.
pub const BASE_DN: &str = "DC=cairn,DC=test";
/// The Administrator's password.
pub const ADMIN_PASSWORD: &str = "Cairn-Adm1n-Pw!";

/// A running domain controller, stopped (with its worker processes) on drop.
pub struct SambaDc {
    child: Child,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

fn samba_tool() -> PathBuf {
    std::env::var_os("CAIRN_SAMBA_TOOL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/samba-tool"))
}

fn checked(cmd: &mut Command, what: &str) -> String {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("{what}: cannot run {cmd:?}: {e} (scripts/test.sh installs samba)")
    });
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn port_open(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

impl SambaDc {
    /// Provisions a new domain and starts its LDAP service.
    pub fn start() -> SambaDc {
        assert!(
            !port_open(636),
            "something already listens on 127.0.0.1:636; the Samba test domain needs LDAP's ports"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        checked(
            Command::new(samba_tool()).args([
                "domain",
                "provision",
                "--use-rfc2307",
                &format!("--realm={REALM}"),
                &format!("--domain={NETBIOS}"),
                "--server-role=dc",
                "--dns-backend=NONE",
                &format!("--adminpass={ADMIN_PASSWORD}"),
                &format!("--targetdir={}", dir.path().display()),
                "--option=interfaces=lo",
                "--option=bind interfaces only=yes",
                "--option=server services=ldap",
                &format!("--option=log file={}/samba.log", dir.path().display()),
            ]),
            "samba-tool domain provision",
        );
        let conf = dir.path().join("etc/smb.conf");
        let child = Command::new("samba")
            .arg("-s")
            .arg(&conf)
            .args(["--foreground", "--no-process-group"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Its own process group, so that drop stops the workers it forks too.
            .process_group(0)
            .spawn()
            .expect("start samba (scripts/test.sh installs it)");
        let dc = SambaDc {
            child,
            conf,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !(port_open(636) && port_open(389)) {
            assert!(
                Instant::now() < deadline,
                "samba did not open LDAP ports within 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        dc
    }

    /// Runs `samba-tool <args>` against this domain and returns its output.
    pub fn tool(&self, args: &[&str]) -> String {
        let mut cmd = Command::new(samba_tool());
        cmd.args(args)
            .arg(format!("--configfile={}", self.conf.display()));
        checked(&mut cmd, &format!("samba-tool {}", args.join(" ")))
    }

    /// One attribute of `samba-tool user show NAME`.
    pub fn user_attribute(&self, name: &str, attribute: &str) -> String {
        let shown = self.tool(&["user", "show", name]);
        shown
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{attribute}: ")))
            .unwrap_or_else(|| panic!("{name} has no {attribute}:\n{shown}"))
            .to_string()
    }

    /// The folder of the domain's files.
    pub fn dir(&self) -> &Path {
        self._dir.path()
    }
}

impl Drop for SambaDc {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}
