"""A second machine on this one, for the multi-node tests: a Linux network namespace joined to this
one by a veth pair (needs root and iproute2; `available()` says whether they are here).

Why not two msrun nodes with --master_addr 127.0.0.1: msrun starts the scheduler on every node whose
own addresses include the master address, so two nodes on one network stack both start one. In the
namespace the master address is another machine's, as it is on a real cluster: node 0 runs here with
MASTER_ADDR = master_ip, node 1 inside the namespace (command prefix `prefix`) with the same address.
"""
import contextlib
import os
import shutil
import subprocess


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


def available():
    """Root and the `ip` command: what a namespace needs."""
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("ip") is not None


@contextlib.contextmanager
def second_machine():
    """Yields (master_ip, prefix): this side's address on the link, and the command prefix that runs
    a program inside the namespace. The namespace and both ends of the link are gone afterwards."""
    tag = os.getpid() % 250 + 1
    name, here, there = f"cpcns{tag}", f"cpcv{tag}a", f"cpcv{tag}b"
    master_ip, node_ip = f"10.213.{tag}.1", f"10.213.{tag}.2"
    _ip("netns", "add", name)
    try:
        _ip("link", "add", here, "type", "veth", "peer", "name", there)
        _ip("link", "set", there, "netns", name)
        _ip("addr", "add", f"{master_ip}/24", "dev", here)
        _ip("link", "set", here, "up")
        prefix = ["ip", "netns", "exec", name]
        for args in (["addr", "add", f"{node_ip}/24", "dev", there], ["link", "set", there, "up"],
                     ["link", "set", "lo", "up"]):
            subprocess.run(prefix + ["ip", *args], check=True, capture_output=True, text=True)
        yield master_ip, prefix
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)  # takes its end of the link along
        subprocess.run(["ip", "link", "del", here], capture_output=True)
