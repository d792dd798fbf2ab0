"""FTP through NAT: the director's FTP helper follows the data connection.

FTP's data connection is a second TCP connection whose address and port the
control connection announces: the client's with PORT / EPRT (the real server
connects out), the real server's with PASV / EPSV (the client connects in).
Behind NAT a real server's own address means nothing to the client, so
ip_vs_ftp reads the control connection, rewrites a PASV answer to the VIP,
and makes an entry for the announced data connection bound to the control
connection's real server. Both families where the command carries the
family (EPRT, EPSV), IPv4 for PORT and PASV.
Sources: net/netfilter/ipvs/ip_vs_ftp.c (ip_vs_ftp_in, ip_vs_ftp_out),
ip_vs_ctl.c ("FTP-NAT requires conntrack for mangling"); RFC 959, RFC 2428.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from conformance.conftest import skip_unless_family
from testbed import Cluster
from testbed.kernel import missing_module
from testbed.load import FTP_PORT, FtpServers
from testbed.observe import FTP_WAYS, FtpRecord, ftp_download
from testbed.registry import FAMILIES, MODES

# its checks hold on a busy guest (it may run beside another run: conftest.py)
pytestmark = pytest.mark.tolerates_load

NAT = next(m for m in MODES.values() if m.rewrites_destination)
CASES = [(w, f) for f in FAMILIES.values() for w in FTP_WAYS if f.version == 4 or not w.ipv4_only]


@pytest.fixture(scope="module")
def ftp(cluster: Cluster) -> Iterator[FtpServers]:
    if reason := missing_module("ip_vs_ftp", needed_by="FTP through NAT"):
        pytest.skip(reason)
    with FtpServers(cluster) as servers:
        yield servers
    cluster.configure(cluster.base_spec)


@pytest.fixture(scope="module", params=CASES, ids=[f"{w.name}-{f.name}" for w, f in CASES])
def download(request: pytest.FixtureRequest, cluster: Cluster, ftp: FtpServers) -> FtpRecord:
    way, family = request.param
    skip_unless_family(cluster, family)
    spec = cluster.base_spec.in_family(family).with_service(
        mode=NAT.name, protocol="tcp", scheduler="rr", port=FTP_PORT, nat_port=None
    )
    cluster.configure(spec)
    return ftp_download(cluster, way)


def test_data_connection_goes_to_the_control_connections_real_server(
    download: FtpRecord, ftp: FtpServers
) -> None:
    """The file comes back, from the real server whose banner greeted the client: the
    helper binds the data connection to the control connection's real server.

    Source: ip_vs_ftp.c (ip_vs_conn_new(..., cp->dest, ...) with the control
    connection as controller, ip_vs_control_add).
    """
    assert download.curl_exit == 0 and download.data_server, (
        f"{download.command}: the download failed (curl exit {download.curl_exit}); "
        f"director's entries {download.director_entries}\n"
        + (ftp.log_tail(download.banner_server) if download.banner_server else "")
    )
    assert download.data_server == download.banner_server, download


def test_the_client_sees_only_the_vip(download: FtpRecord, cluster: Cluster) -> None:
    """The client's data connection is with the VIP: it connects to the VIP (PASV, EPSV:
    the 227 answer rewritten, the 229 answer carrying a port only), or the real server's
    connection arrives from the VIP's port 20 (PORT, EPRT).

    Source: ip_vs_ftp.c ip_vs_ftp_out (PASV answer rewritten to vaddr/vport),
    ip_vs_ftp_in (an entry for the announced client port); RFC 959 3.2 (port 20).
    """
    vip = str(cluster.spec.service.vip)
    assert download.data_peer, f"no data connection seen at the client: {download}"
    peers = download.data_peer.split(", ")
    assert all(p.rsplit(":", 1)[0] == vip for p in peers), (
        f"{download.command}: the data connection was with {peers}, not the VIP {vip}"
    )
    if download.active:
        assert all(p.rsplit(":", 1)[1] == "20" for p in peers), (
            f"{download.command}: the real server's data connection came from {peers}"
        )
