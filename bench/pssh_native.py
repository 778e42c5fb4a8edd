"""Runs one command on every host of a file with pip's parallel-ssh (libssh2).

usage: pssh_native.py HOSTFILE IDENTITY POOL_SIZE PORT COMMAND
Exit 0 when every host answered exit 0, else 1 (and the failures on stderr).
parallel-ssh's native client does not check host keys against known_hosts.
"""
import sys

from pssh.clients.native import ParallelSSHClient

hostfile, identity, pool, port, command = sys.argv[1:6]
hosts = [h.strip() for h in open(hostfile) if h.strip()]
client = ParallelSSHClient(
    hosts, user="root", pkey=identity, port=int(port), pool_size=int(pool),
    num_retries=1, timeout=60,
)
output = client.run_command(command, stop_on_errors=False)
client.join(output)
bad = 0
for host_out in output:
    if host_out.exception is not None or host_out.exit_code != 0:
        bad += 1
        if bad <= 5:
            print(f"{host_out.host}: exit {host_out.exit_code} {host_out.exception!r}", file=sys.stderr)
print(f"{len(hosts) - bad} ok, {bad} failed", file=sys.stderr)
sys.exit(1 if bad else 0)
