#!/usr/bin/env python3
"""One-off, for merging: moves README.md's reference sections into the book
(docs/book/src) and shrinks README.md to what rekindle is, the two commands and
links. For a merge where README.md conflicts: take the full README (git
checkout --theirs README.md), then run `python3 scripts/readme-to-book.py .`;
it rewrites the book pages the README sections go to. Delete once merged."""
import re, sys, pathlib
root = pathlib.Path(sys.argv[1])
readme = (root/"README.md").read_text()
lines = readme.split("\n")
# Sections: (level, title, start, end)
heads = [(i, len(m.group(1)), m.group(2)) for i, l in enumerate(lines) if (m := re.match(r"^(#{2,3}) (.*)$", l))]
secs = {}
for k, (i, lvl, title) in enumerate(heads):
    end = len(lines)
    for (j, lvl2, _) in heads[k+1:]:
        if lvl2 <= lvl or True:
            end = j; break
    secs[title] = (lvl, "\n".join(lines[i+1:end]).strip("\n"))
def body(title):
    for t, v in secs.items():
        if t.startswith(title): return t, v[1]
    raise SystemExit("no section " + title)
def convert(text):
    out=[]; block=[]
    def flush():
        if not block: return
        cmds=[b[4:] for b in block]
        if all(c.startswith(("rekindle ","./scripts/","scripts/","PROFILE=","PLAYBOOK=")) or not c.strip() for c in cmds):
            out.append("```console")
            out.extend("$ "+c if c.strip() else c for c in cmds)
            out.append("```")
        else:
            out.append("```text"); out.extend(cmds); out.append("```")
        block.clear()
    prev_blank=True
    for l in text.split("\n"):
        if l.startswith("    ") and (block or prev_blank) and not l.lstrip().startswith(("-","|")):
            block.append(l); continue
        if block and l.strip()=="" : block.append(l); continue
        if block:
            while block and not block[-1].strip(): block.pop(); out.append("") if False else None
            flush(); out.append("")
        out.append(l); prev_blank = (l.strip()=="")
    if block: flush()
    return "\n".join(out)
def page(path, parts, head=None, tail=""):
    text=[]
    if head: text.append(head)
    for title, lvl in parts:
        t, b = body(title)
        text.append("#"*lvl+" "+t+"\n\n"+convert(b))
    if tail: text.append(tail)
    (root/"docs/book/src"/path).write_text("\n\n".join(text).rstrip()+"\n")
inc = lambda topic: f"{{{{#include ../generated/topics/{topic}.md}}}}"
page("reference/commands.md", [("Commands",1)], tail="## Every `--help`\n\nGenerated from the binary by scripts/book.sh when the book is built (so it\ncannot fall behind a flag); the same text is in the man pages\n(`man rekindle-run`, [Installing](../guides/install.md)).\n\n{{#include ../generated/commands.md}}")
page("reference/selectors.md", [("Selectors",1)])
page("reference/journal.md", [("Journal, resume and reports",1)])
page("guides/war-room.md", [("War room",1)])
page("guides/etcd.md", [("A run that survives its bastion",1)], tail="## More\n\n"+inc("etcd"))
page("guides/ssh.md", [("Logging in",2),("Privilege escalation",2)], head="# SSH: host keys, certificates and become", tail="## More\n\n"+inc("ssh"))
page("guides/bmc.md", [("Power-on through BMCs",1),("IPMI",2)], tail="## More\n\n"+inc("bmc"))
page("guides/drills.md", [("Simulator and drill",1)], tail="`./scripts/drill.sh` runs a cold-start rehearsal; the\n[quick start](../quick-start.md) walks through `sim` and a run against it.")
page("reference/inventory.md", [("Inventory format",1)], tail="## Native inventory topics\n\n"+inc("inventory"))
page("guides/ansible-inventories.md", [("Ansible inventories",1)])
page("reference/playbook.md", [("Playbook format",1),("Readiness gates",2),("Growing waves",2),("Steps",2),("Remediation",2),("Values",2)])
page("reference/diagnostics.md", [("Diagnostics",1)])
page("guides/static-binary.md", [("One static binary",1)])
page("reference/layout.md", [("Layout",1)])
extra = '''## Inventory, gate and BMC codes, and what to do

| code | severity | meaning | what to do |
| --- | --- | --- | --- |
| `bad-address` | error | a host's `address` (a template filled from its name) is no IP address or host name | fix the template or the name pattern's ranges |
| `bad-pattern` | error | a host name pattern does not expand (bad range), or an Ansible host name is a Jinja template | write ranges as `web[01-20]`; templates belong in values such as `ansible_host` |
| `bad-template` | error | a label or address template names a range the name pattern does not have (`{3}` of a two-range name) | use `{1}`..`{N}` for the N ranges of the name |
| `conflicting-host` | error | the same host is defined twice with different address, port, user or jump host | keep one definition, or make them agree |
| `conflicting-defaults` | error | two inventories set different `known_hosts` (or other connection defaults) | pass one, or make them agree |
| `no-hosts` | error | the inventories define no host at all | check the paths given with `-i` |
| `too-many-hosts` | error | the inventories expand to more hosts than rekindle accepts | check the ranges of the name patterns |
| `bad-csv` | error | a CSV inventory line does not parse (an unclosed quote, a wrong field count) | fix the line; fields do not span lines |
| `bad-section` | error | an Ansible INI section header of an unknown type | a section is `[group]`, `[group:children]` or `[group:vars]` |
| `bad-group` | error | a line in a `[group:children]` section is no group name | one group name per line |
| `bad-host` | error | an Ansible INI host line does not parse (e.g. a `,` in the name) | one host per line, variables as `key=value` |
| `bad-variable` | error | a line in a `[group:vars]` section, or a host variable, is not `key=value` | write `key=value` |
| `undefined-group` | error | `[group:vars]` for a group that is never defined | declare it with a `[group]` section |
| `group-loop` | error | groups that contain themselves through `children` | break the cycle |
| `not-a-group` | warning | a top-level key of an Ansible YAML inventory has no `hosts`, `vars` or `children`; skipped, as Ansible skips it | remove it, or make it a group |
| `ignored-file` | warning | a file in an inventory directory that is not read (as Ansible ignores it) | rename it with an inventory extension, or move it out |
| `not-a-directory` | error | `group_vars` or `host_vars` exists but is not a directory | make it a directory of YAML/JSON files |
| `unmatched-vars-file` | warning | a `group_vars`/`host_vars` file for no group or host of the inventory | rename it to the group or host it is for, or delete it |
| `vault` | warning | an Ansible Vault-encrypted value or file: rekindle does not decrypt vaults, so it is left out | export the decrypted inventory (`ansible-inventory --list`) or keep secrets out of connection variables |
| `inventory-script` | error | an executable inventory script failed, timed out or printed no JSON | run it by hand with `--list`; fix its output |
| `unsupported-format` | error | an inventory format rekindle does not read (TOML, plugin configurations) | `ansible-inventory -i PATH --list > inventory.json` and pass that |
| `bad-gate` | error | a readiness gate in `after` (`{ storage: 95% }`) is not a share | write a percentage from 0% to 100% |
| `bad-waves` | error | `parallel` as a list of wave sizes is empty or has a bad size | e.g. `parallel: [1, 1%, 5%, 10%]` |
| `remediate-unused` | warning | a stage sets `remediate` but has no `power_on`, `wait_ssh` or `reboot` step, so nothing is ever power-cycled | remove `remediate`, or add the step it should watch |
| `plain-http-bmc` | error | a BMC URL is plain `http://`, so its password would cross the network in cleartext | use `https://`; or `--bmc-allow-http` / the label `bmc_allow_http: "true"` when the BMC network is trusted |
'''
p = root/"docs/book/src/reference/diagnostics.md"
p.write_text(p.read_text().rstrip()+"\n\n"+extra)
p = root/"README.md"
lines = p.read_text().split("\n")
two = next(i for i,l in enumerate(lines) if l == "## Two commands")
nxt = next(i for i,l in enumerate(lines) if i > two and l.startswith("## "))
intro = lines[1:two]
# drop the docs pointer paragraph of the intro (moved into Documentation)
intro_text = "\n".join(intro).strip("\n")
intro_text = re.sub(r"\n\n`docs/design.md` is the product's contract.*$", "", intro_text, flags=re.S)
twocmd = "\n".join(lines[two:nxt]).strip("\n")
twocmd = twocmd.replace("\n    ./scripts/drill.sh\n", "\n```console\n$ ./scripts/drill.sh\n```\n")
twocmd = twocmd.replace("\n    ./scripts/test.sh\n", "\n```console\n$ ./scripts/test.sh\n```\n")
docs = """## Documentation

The book, under [`docs/book/`](docs/book/src/SUMMARY.md) (`./scripts/book.sh`
builds it into `target/book/index.html`; CI builds it, and runs its examples):

- [Five-minute quick start on the simulator](docs/book/src/quick-start.md)
- [The day of the disaster: a runbook](docs/book/src/disaster-day.md), from a
  standby bastion: etcd, `plan --preflight`, `audit`, `run --listen`,
  pause/continue, resume, takeover, report
- Guides: [installing (man pages, completions)](docs/book/src/guides/install.md),
  [one static binary](docs/book/src/guides/static-binary.md),
  [Ansible inventories](docs/book/src/guides/ansible-inventories.md),
  [BMCs and credentials](docs/book/src/guides/bmc.md),
  [SSH certificates and become](docs/book/src/guides/ssh.md),
  [drills](docs/book/src/guides/drills.md),
  [audit](docs/book/src/guides/audit.md),
  [etcd](docs/book/src/guides/etcd.md),
  [war room: live status and metrics](docs/book/src/guides/war-room.md),
  [CI and editors: SARIF, pre-commit, JSON Schemas](docs/book/src/guides/ci-and-editors.md)
- Reference: [commands](docs/book/src/reference/commands.md) (and `man
  rekindle`), [exit codes](docs/book/src/reference/exit-codes.md),
  [selectors](docs/book/src/reference/selectors.md),
  [playbook format](docs/book/src/reference/playbook.md),
  [inventory format](docs/book/src/reference/inventory.md),
  [journal, resume and reports](docs/book/src/reference/journal.md),
  [diagnostic codes](docs/book/src/reference/diagnostics.md),
  [source layout](docs/book/src/reference/layout.md)

[`docs/design.md`](docs/design.md) is the product's contract (what must stay
true); [`docs/findings.md`](docs/findings.md) the measured facts about crates
and this machine the code relies on; [`BENCHMARKS.md`](BENCHMARKS.md) every
number with its command, machine and date (the scripts are under `bench/`)."""
out = "# rekindle\n\n<!-- ANCHOR: intro -->\n" + intro_text + "\n<!-- ANCHOR_END: intro -->\n\n" + twocmd + "\n\n" + docs + "\n"
p.write_text(out)
b = root/"docs/book/src/README.md"
b.write_text("""# What rekindle is

{{#include ../../../README.md:intro}}

- New here: the [five-minute quick start](quick-start.md) on a simulated
  fleet.
- On the day: [the runbook](disaster-day.md).
- Looking something up: the [reference](reference/commands.md): every
  command's `--help`, exit codes, the playbook and inventory formats, the
  journal, every diagnostic code with its fix.
""")
# The README's own updates (first build, what test.sh installs).
s = p.read_text()
s = re.sub(r"dependencies \(about 300 crates\).*?It builds with `cargo test --no-run`", """dependencies (about 290 crates), with cargo's progress shown: about 6.3
minutes of CPU (only russh and its crypto are optimised in debug builds, and
no C library is built with cmake; BENCHMARKS.md, "First build"), so roughly
3.5 to 4.5 minutes on an idle 2-core machine (estimated from the CPU time: it
was measured on a shared, loaded one); seconds after that. It builds with `cargo test --no-run`""", s, flags=re.S)
s = s.replace("static binary (below) with a quick profile", "static binary ([one static binary](docs/book/src/guides/static-binary.md)) with a quick profile")
p.write_text(s)
s = p.read_text()
s = s.replace("`openipmi`, `etcd-server` and `file` first if they are missing; the SSH tests", """`openipmi`, `etcd-server`, `file`, `prometheus` (for `promtool`), `man-db`,
`git`, `iproute2` and `python3-venv` first if they are missing, and a Python
venv under `target/py-tools` with check-jsonschema, pre-commit and mdBook from
PyPI (`scripts/py-tools.sh`); the SSH tests""")
p.write_text(s)
