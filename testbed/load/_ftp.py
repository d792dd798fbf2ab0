"""vsftpd on every real server: the FTP service the director's FTP helper must follow.

Each real server's vsftpd greets with the server's name and serves one
file, ``who``, holding that name, so a download says which real server
served the data connection and the banner which one served the control
connection. Anonymous and read-only, both families (listen_ipv6 on ``::``),
passive ports from a small range, active data from port 20. Its files live
in the cluster's work directory. Source: vsftpd.conf(5).
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

from ..cluster import Cluster
from ..util import Scoped, TestbedError, wait_until

FTP_PORT = 21
PASSIVE_PORTS = (30000, 30019)
WHO = "who"  # the file each real server serves: its own name


def vsftpd_config(name: str, root: Path, empty: Path, log: Path) -> str:
    """One real server's vsftpd.conf."""
    settings = {
        "listen": "NO",
        "listen_ipv6": "YES",  # on "::": IPv4 and IPv6 alike
        "background": "NO",  # a child of the testbed, stopped with it
        "anonymous_enable": "YES",
        "no_anon_password": "YES",
        "local_enable": "NO",
        "write_enable": "NO",
        "anon_root": str(root),
        "secure_chroot_dir": str(empty),
        "seccomp_sandbox": "NO",
        "ftpd_banner": name,
        "pasv_enable": "YES",
        "pasv_min_port": str(PASSIVE_PORTS[0]),
        "pasv_max_port": str(PASSIVE_PORTS[1]),
        "port_enable": "YES",
        "connect_from_port_20": "YES",
        "xferlog_enable": "NO",
        "log_ftp_protocol": "YES",
        "vsftpd_log_file": str(log),
        "dual_log_enable": "NO",
    }
    return "".join(f"{k}={v}\n" for k, v in settings.items())


def _listening(pid: int, port: int) -> bool:
    """A listening TCP socket on ``port`` in the namespace of ``pid`` (/proc/net/tcp6)."""
    for name in ("tcp6", "tcp"):
        path = Path(f"/proc/{pid}/net/{name}")
        for line in path.read_text().splitlines()[1:] if path.exists() else []:
            local, state = line.split()[1], line.split()[3]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


class FtpServers(Scoped):
    """vsftpd on every real server of the cluster, for as long as the scope lasts."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.procs: dict[str, Any] = {}
        self.logs: dict[str, Path] = {}

    def start(self) -> None:
        c = self.cluster
        for rs in c.base_spec.real_servers:
            home = c.workdir / f"ftp-{rs.name}"
            root, empty = home / "root", home / "empty"
            for d in (root, empty):
                d.mkdir(parents=True, exist_ok=True)
                d.chmod(0o755)  # vsftpd refuses a root its ftp user could write
            (root / WHO).write_text(rs.name)
            conf = home / "vsftpd.conf"
            self.logs[rs.name] = home / "vsftpd.log"
            conf.write_text(vsftpd_config(rs.name, root, empty, self.logs[rs.name]))
            self.procs[rs.name] = c.node(rs.name).popen(
                ["vsftpd", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
        for name, proc in self.procs.items():

            def up(p: Any = proc, n: str = name) -> bool:
                return p.poll() is not None or _listening(c.pid(n), FTP_PORT)

            if not wait_until(up, timeout=60, interval=0.2):
                raise TestbedError(f"vsftpd on {name} did not listen on port {FTP_PORT}")
            if proc.poll() is not None:
                err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
                raise TestbedError(f"vsftpd on {name} exited ({proc.returncode}): {err}")

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(Exception):
                proc.terminate()
                proc.wait(5)
        self.procs.clear()

    def log_tail(self, name: str, lines: int = 20) -> str:
        """The end of a real server's vsftpd protocol log (for failure messages)."""
        path = self.logs.get(name)
        if path is None or not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
