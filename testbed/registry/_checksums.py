"""Who computes transport checksums: the sending stack, or (never, on veth) the device.

veth advertises checksum offload, so by default a sender leaves TCP/UDP
checksums (and SCTP's CRC32c) partial and the frame crosses the testbed's
links that way: a capture then shows a checksum that is not final, and
IPVS updates a partial checksum differently from a full one
(ip_vs_proto_tcp.c tcp_snat_handler: CHECKSUM_PARTIAL takes
tcp_partial_csum_update, a full checksum tcp_fast_csum_update;
ip_vs_proto_sctp.c sctp_csum_check / sctp_nat_csum). Each entry sets every
interface's transmit checksum offload explicitly (ethtool(8) -K tx), so
both kernel paths are exercised and, with offload off, every captured
checksum can be verified hop by hop.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._registry import Registry


@dataclass(frozen=True, kw_only=True)
class Checksums:
    """One way of handling checksums on the testbed's interfaces, declared once."""

    name: str  # "offload": test ids, options
    title: str
    tx_offload: bool  # ethtool -K <dev> tx on|off
    # every checksum a capture shows is final (so a checker can verify it);
    # otherwise the reason it is not
    unverifiable_because: str | None

    @property
    def ethtool(self) -> str:
        return f"tx {'on' if self.tx_offload else 'off'}"


CHECKSUMS: Registry[Checksums] = Registry("checksum handling")

OFFLOAD = CHECKSUMS.register(
    Checksums(
        name="offload",
        title="checksum offload",
        tx_offload=True,
        unverifiable_because=(
            "with checksum offload senders leave transport checksums partial, to be "
            "completed by a device that veth never reaches"
        ),
    )
)

COMPUTED = CHECKSUMS.register(
    Checksums(
        name="computed",
        title="checksums computed by the stack",
        tx_offload=False,
        unverifiable_because=None,
    )
)
