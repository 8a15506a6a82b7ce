//! nginx (Debian's) as the upstream behind Envoy and as the yardstick for file downloads.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The upstream's answer; it also echoes the request headers the header filters touch, so a
/// check can see that the filter in front of it did its work.
pub const UPSTREAM_LOCATION: &str = r#"
        location / {
            add_header x-upstream-saw "team=$http_x_team debug=$http_x_debug" always;
            return 200 "ok\n";
        }"#;

/// A running nginx, one process (no master), killed on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    /// Start nginx on a free loopback port with `locations` in its only server, its files
    /// under `dir`, pinned to `core` when given.
    pub fn start(dir: &Path, locations: &str, core: Option<usize>) -> Result<Nginx, String> {
        let addr = free_port()?;
        let d = dir.display();
        for sub in ["tmp", "logs"] {
            fs::create_dir_all(dir.join(sub)).map_err(|e| format!("{d}/{sub}: {e}"))?;
        }
        // One process, so that pinning it to a core pins all of it.
        let conf = format!(
            r#"daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    sendfile on;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen {addr};
{locations}
    }}
}}
"#
        );
        let conf_path = dir.join("nginx.conf");
        fs::write(&conf_path, conf).map_err(|e| format!("{}: {e}", conf_path.display()))?;
        // Debian puts nginx in /usr/sbin, which not every PATH has.
        let program = Path::new("/usr/sbin/nginx");
        let program = if program.is_file() {
            program.as_os_str()
        } else {
            "nginx".as_ref()
        };
        let mut command = match core {
            Some(core) => {
                let mut c = Command::new("taskset");
                c.args(["-c", &core.to_string()]).arg(program);
                c
            }
            None => Command::new(program),
        };
        let child = command
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf_path)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("cannot run nginx: {e} (install it with `apt-get install nginx`)")
            })?;
        let mut nginx = Nginx {
            child,
            addr,
            dir: dir.to_path_buf(),
        };
        nginx.wait_listening()?;
        Ok(nginx)
    }

    fn wait_listening(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("nginx exited ({status}): {}", self.log()));
            }
            if TcpStream::connect(self.addr).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("nginx not listening after 10 s: {}", self.log()))
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port free right now (nginx cannot be told to pick one itself).
pub fn free_port() -> Result<SocketAddr, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))
}
