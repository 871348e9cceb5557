"""The RIPE Atlas stand-in in the lab: a throw-away CA, its server certificate, its command line
and the coordinator's ``[atlas]`` settings that point at it.

The stand-in (``python -m coordinator.atlas.standin``, helper F's) is optional: when its module or
its sample directory is missing, the lab runs without Atlas and says so.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from lab.build import Lab


def available() -> str | None:
    """None when the stand-in can run here, else the reason it cannot."""
    if importlib.util.find_spec("coordinator.atlas.standin") is None:
        return "coordinator.atlas.standin is not in this tree"
    from coordinator.atlas.standin import default_samples

    if not default_samples().is_dir():
        return f"no Atlas samples at {default_samples()}"
    return None


def make_certs(lab: Lab) -> tuple[Path, Path, Path]:
    """(ca.pem, cert.pem, key.pem) for the Atlas host's address, from a fresh trustme CA."""
    import trustme

    d = lab.workdir / "atlas-tls"
    d.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    cert = ca.issue_cert(lab.topo.node("atlas").address, "atlas.lab")
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    cert.private_key_pem.write_to_path(str(d / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(d / "cert.pem"))
    for extra in cert.cert_chain_pems[1:]:
        extra.write_to_path(str(d / "cert.pem"), append=True)
    return d / "ca.pem", d / "cert.pem", d / "key.pem"


def standin_args(lab: Lab, cert: Path, key: Path, probes_file: Path, interval_s: float) -> list[str]:
    return ["coordinator.atlas.standin", "--listen", f"{lab.topo.node('atlas').address}:{lab.topo.atlas_port}",
            "--cert", str(cert), "--key", str(key), "--probes", str(probes_file),
            "--result-interval-s", str(interval_s)]


def coordinator_section(lab: Lab, ca: Path, interval_s: float) -> dict[str, Any]:
    """``[atlas]`` for the lab: the stand-in as server, compressed time (keys the installed
    Settings does not know are left out)."""
    import dataclasses

    from coordinator.atlas.settings import Settings

    server = f"{lab.topo.node('atlas').address}:{lab.topo.atlas_port}"
    wanted: dict[str, Any] = {
        "enabled": True, "server": server, "stream_url": f"wss://{server}/stream/", "ca_file": str(ca),
        "countries": [lab.topo.country], "poll_interval_s": float(interval_s), "lookback_s": 600.0,
        "bucket_s": float(2 * interval_s), "baseline_s": 600.0, "min_disconnects": 2,
    }
    known = {f.name for f in dataclasses.fields(Settings)}
    return {k: v for k, v in wanted.items() if k in known}
