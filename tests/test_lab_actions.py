"""Every fault action has its intended effect on real traffic inside the lab, and its undo restores.

One lab (prefix ``tla``) with its web and DNS services is brought up for the module; traffic is
real: TCP connects, HTTP GETs, downloads and DNS queries from inside probe namespaces.
"""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from lab import check, netns, services
from lab.actions import ActionError, Context, make_action
from lab.build import Lab
from lab.procs import Procs
from lab.testing import need_root
from lab.topology import kazakhstan

pytestmark = pytest.mark.netns
P = "tla"
FIX, MOB1, OUT = f"{P}-fix", f"{P}-mob1", f"{P}-out"
NEWS, SHOP, WORLD = "198.19.20.10", "198.19.20.13", "198.19.100.10"
SOCIAL, CONTROL = "198.19.100.20", "198.19.100.30"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    need_root()
    lab = Lab(kazakhstan(), P, tmp_path_factory.mktemp("lab"))
    lab.up()
    procs = Procs(P, lab.workdir)
    try:
        services.start_services(lab, procs)
        ctx = Context(lab, services.tamper_path(lab), kill_process=procs.kill,
                      start_process=lambda name: procs.start(name, FIX, ["lab.servers", "web", "--port", "8080"]),
                      stop_process=procs.stop)
        yield lab, ctx, procs
    finally:
        procs.stop_all()
        lab.down()


def tcp(ns, addr, port=80):
    return check.tcp(ns, addr, port, 0.6)


def apply_undo(env, kind, params):
    lab, ctx, _ = env
    action = make_action("t1", kind, params, lab)
    action.apply(ctx)
    return action, ctx


def test_baseline_everything_reachable(env):
    assert [tcp(FIX, a) for a in (NEWS, SHOP, WORLD)] == ["ok"] * 3
    assert check.http(MOB1, NEWS)[0] == "ok"
    assert check.dns(FIX, "198.19.20.53", "world.example.lab") == WORLD


def test_cut_link_both_directions_and_undo(env):
    action, ctx = apply_undo(env, "cut", {"links": [["fix", "core"]]})
    try:
        assert tcp(FIX, NEWS) == "timeout"
        assert tcp(OUT, "198.19.10.1", 9) == "timeout"        # inbound too (refused when reachable)
        assert tcp(MOB1, NEWS) == "ok"
    finally:
        action.undo(ctx)
    assert tcp(FIX, NEWS) == "ok" and tcp(OUT, "198.19.10.1", 9) == "refused"


def test_cut_node_is_a_dead_router(env):
    action, ctx = apply_undo(env, "cut", {"nodes": ["mob1"]})
    try:
        assert tcp(MOB1, NEWS) == "timeout" and tcp(OUT, "198.19.11.1", 9) == "timeout"
        assert tcp(FIX, NEWS) == "ok"
    finally:
        action.undo(ctx)
    assert tcp(MOB1, NEWS) == "ok"


def test_cut_border_keeps_domestic(env):
    action, ctx = apply_undo(env, "cut_border", {})
    try:
        assert tcp(FIX, NEWS) == "ok" and tcp(MOB1, SHOP) == "ok"
        assert tcp(FIX, WORLD) == "timeout" and tcp(OUT, NEWS) == "timeout"
    finally:
        action.undo(ctx)
    assert tcp(FIX, WORLD) == "ok" and tcp(OUT, NEWS) == "ok"


def test_cut_access_type(env):
    action, ctx = apply_undo(env, "cut_access", {"access": "mobile"})
    try:
        assert tcp(MOB1, NEWS) == "timeout" and tcp(f"{P}-mob2", WORLD) == "timeout"
        assert tcp(FIX, WORLD) == "ok"
    finally:
        action.undo(ctx)
    assert tcp(MOB1, NEWS) == "ok" and tcp(f"{P}-mob2", WORLD) == "ok"


def test_allow_list(env):
    action, ctx = apply_undo(env, "allow_list", {"allow": ["news.kz.lab", "resolver-kz.lab"]})
    try:
        assert tcp(FIX, NEWS) == "ok" and check.http(MOB1, NEWS)[0] == "ok"
        assert check.dns(FIX, "198.19.20.53", "news.kz.lab") == NEWS
        assert tcp(FIX, SHOP) == "timeout" and tcp(MOB1, WORLD) == "timeout"
        assert tcp(OUT, WORLD) == "ok"                         # the outside world is unaffected
    finally:
        action.undo(ctx)
    assert tcp(FIX, SHOP) == "ok" and tcp(MOB1, WORLD) == "ok"


def test_http_block_reset_and_drop(env):
    action, ctx = apply_undo(env, "http_block", {"targets": ["world.example.lab"], "how": "reset"})
    try:
        assert tcp(FIX, WORLD) == "ok"                         # handshake passes
        assert check.http(FIX, WORLD, timeout_s=1.0)[0] == "reset"
        assert check.http(FIX, NEWS)[0] == "ok" and check.http(OUT, WORLD)[0] == "ok"
    finally:
        action.undo(ctx)
    action, ctx = apply_undo(env, "http_block", {"targets": ["world.example.lab"], "how": "drop"})
    try:
        assert check.http(FIX, WORLD, timeout_s=1.0)[0] == "timeout"
    finally:
        action.undo(ctx)
    assert check.http(FIX, WORLD)[0] == "ok"


@pytest.mark.parametrize(("mode", "answer"), [("nxdomain", "nxdomain"), ("bogus", "198.19.66.66"),
                                              ("bogon", "10.10.34.34")])
def test_dns_tamper_at_the_in_country_resolver(env, mode, answer):
    action, ctx = apply_undo(env, "dns_tamper", {"names": ["world.example.lab"], "mode": mode})
    try:
        assert check.dns(FIX, "198.19.20.53", "world.example.lab") == answer
        assert check.dns(FIX, "198.19.20.53", "news.kz.lab") == NEWS
        assert check.dns(OUT, "198.19.100.53", "world.example.lab") == WORLD   # the control resolver
    finally:
        action.undo(ctx)
    assert check.dns(FIX, "198.19.20.53", "world.example.lab") == WORLD


def test_access_links_have_their_capacity(env):
    fixed = check.download_bps(FIX, CONTROL, 3_000_000)
    mobile = check.download_bps(MOB1, CONTROL, 1_500_000)
    outside = check.download_bps(OUT, CONTROL, 3_000_000)
    assert 25e6 < fixed < 55e6, fixed          # tbf 50mbit (plus its 10 ms burst)
    assert 8e6 < mobile < 24e6, mobile         # tbf 20mbit
    assert outside > 60e6, outside             # unshaped


def test_throttle_an_access_type(env):
    action, ctx = apply_undo(env, "throttle", {"access": "mobile", "rate": "1mbit"})
    try:
        slow = check.download_bps(MOB1, CONTROL, 200_000)
        fast = check.download_bps(FIX, CONTROL, 2_000_000)
        assert 0.3e6 < slow < 1.5e6, slow
        assert fast > 20e6, fast
    finally:
        action.undo(ctx)
    assert 8e6 < check.download_bps(MOB1, CONTROL, 1_500_000) < 24e6     # back to the 20mbit capacity


def test_throttle_applied_mid_download_leaves_the_network_usable(env):
    """A download in flight fills the queue with GSO packets sized for the 20mbit bucket; a tbf changed
    in place kept them, none fitted the 1mbit bucket and the network went dark (not slow) for good."""
    for _ in range(3):
        bulk = subprocess.Popen(["ip", "netns", "exec", MOB1, "curl", "-s", "-o", "/dev/null", "-m", "2",
                                 f"http://{CONTROL}/bytes/20000000"])
        try:
            check.download_bps(MOB1, CONTROL, 100_000)               # the bulk transfer is under way
            action, ctx = apply_undo(env, "throttle", {"access": "mobile", "rate": "1mbit"})
            try:
                bulk.wait(timeout=10)
                assert tcp(MOB1, NEWS) == "ok"
                assert 0.2e6 < check.download_bps(MOB1, CONTROL, 50_000, timeout_s=5) < 1.5e6
            finally:
                action.undo(ctx)
        finally:
            bulk.kill()
            bulk.wait()


def test_throttle_only_chosen_targets(env):
    action, ctx = apply_undo(env, "throttle", {"targets": ["social.example.lab"], "rate": "1mbit"})
    try:
        assert check.download_bps(MOB1, SOCIAL, 200_000) < 1.5e6
        assert check.download_bps(MOB1, CONTROL, 1_500_000) > 8e6      # the control keeps the link's speed
        assert check.download_bps(OUT, SOCIAL, 2_000_000) > 20e6      # outside the country: full speed
    finally:
        action.undo(ctx)
    assert check.download_bps(MOB1, SOCIAL, 1_500_000) > 8e6


def test_a_throttled_target_still_takes_new_connections(env):
    """A download under way must not fill the slow class's queue so far that a new connection cannot
    open: throttled is slow, not unreachable.  A short queue may drop a handshake packet (TCP sends
    it again after 1 s), so each try gets 2.5 s and two of at most five must get their bytes; with
    the class's default 1,000-packet queue none did."""
    action, ctx = apply_undo(env, "throttle", {"targets": ["social.example.lab"], "rate": "150kbit"})
    try:
        bulk = subprocess.Popen(["ip", "netns", "exec", MOB1, "curl", "-s", "-o", "/dev/null", "-m", "20",
                                 f"http://{SOCIAL}/bytes/1000000"])
        got: list[float] = []
        try:
            time.sleep(1.5)                                    # under way, and its queue is full
            for _ in range(5):                                 # bounded: 5 tries of at most 2.5 s
                got.append(check.download_bps(MOB1, SOCIAL, 4_000, timeout_s=2.5))
                if sum(1 for g in got if g > 0) >= 2:
                    break
        finally:
            bulk.kill()
            bulk.wait()
        assert sum(1 for g in got if 0 < g < 300e3) >= 2, got   # they connect and get their bytes, slowly
    finally:
        action.undo(ctx)


def test_kill_probe_and_restart(env):
    lab, ctx, procs = env
    ctx.start_process("probe-fix-1")
    first = procs.by_name["probe-fix-1"]
    action = make_action("t2", "kill_probe", {"probe": "fix-1"}, lab)
    action.apply(ctx)
    assert first.popen.returncode == -signal.SIGKILL
    assert netns.load_state(P)["processes"] and all(p["name"] != "probe-fix-1" for p in netns.load_state(P)["processes"])
    action.undo(ctx)
    assert procs.by_name["probe-fix-1"].alive() and procs.by_name["probe-fix-1"].pid != first.pid
    procs.stop("probe-fix-1")


def test_bad_parameters_are_refused(env):
    lab, _, _ = env
    for kind, params, text in [("cut", {"links": [["fix", "intl"]]}, "no link"), ("cut", {}, "give links"),
                               ("throttle", {"rate": "fast"}, "rate"), ("dns_tamper", {"names": ["x"], "mode": "lie"}, "mode"),
                               ("allow_list", {"allow": ["nope.lab"]}, "no target"), ("teleport", {}, "unknown action"),
                               ("cut_border", {"x": 1}, "unknown parameter"), ("kill_probe", {"probe": "zz"}, "probe")]:
        with pytest.raises(ActionError, match=text):
            make_action("t3", kind, params, lab)
