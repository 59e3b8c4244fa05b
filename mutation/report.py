"""Summarise a mutmut run as Markdown: the score per module, and every survivor.

Run by mutation/run after `mutmut run`. Survivors that were looked at and judged equivalent
(no test can tell them apart from the original) or acceptable are listed in
mutation/triage.toml with the reason; the rest are listed with their diffs, as work to do.
"""

from __future__ import annotations

import collections
import os
import platform
import re
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).parent
MUTMUT = str(Path(sys.executable).with_name("mutmut"))
# "archibald._geojson.x__polygons__mutmut_12" or "archibald._geojson.xǁClassǁmethod__mutmut_3"
NAME = re.compile(r"^(?P<module>[\w.]+?)\.x(?:ǁ|_)(?P<function>.+)__mutmut_\d+$")


def main() -> None:
    listing = subprocess.run(
        [MUTMUT, "results", "--all", "true"], capture_output=True, text=True, check=True
    ).stdout
    results = dict(
        line.strip().rsplit(": ", 1) for line in listing.splitlines() if ": " in line.strip()
    )
    triage = tomllib.loads((HERE / "triage.toml").read_text())
    judged = {**triage.get("equivalent", {}), **triage.get("accepted", {})}
    survivors = [n for n, status in results.items() if status == "survived" and n not in judged]
    changes = {name: _change(name) for name in survivors}
    wording = {name for name in survivors if _only_text(*changes[name])}
    table: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for name, status in sorted(results.items()):
        match = NAME.match(name)
        module = match["module"] if match else "?"
        if status == "survived" and name in triage.get("equivalent", {}):
            status = "equivalent"
        elif status == "survived" and name in triage.get("accepted", {}):
            status = "accepted"
        elif name in wording:
            status = "wording"
        table[module][status] += 1
    columns = [
        "killed", "survived", "wording", "equivalent", "accepted", "no tests", "timeout",
        "not checked",
    ]  # fmt: skip
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    print("# Mutation testing: the latest run\n")
    print(
        f"mutmut over archibald's core at commit {commit or 'unknown'}; Python "
        f"{platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores."
    )
    print("Command: `bash mutation/run` (see mutation/README.md).\n")
    print("| module | " + " | ".join(columns) + " | score |")
    print("|---" * (len(columns) + 2) + "|")
    for module, counts in sorted(table.items()):
        killed = counts["killed"] + counts["timeout"]
        scored = killed + counts["survived"] + counts["accepted"]
        score = f"{killed / scored:.0%}" if scored else "-"
        cells = " | ".join(str(counts[c]) for c in columns)
        print(f"| {module} | {cells} | {score} |")
    unchecked = sum(counts["not checked"] for counts in table.values())
    print("\nThe score is killed / (killed + survived + accepted). Left out of it: equivalent")
    print("mutants (no test can tell them from the original), mutants that no test reaches,")
    print("mutants not checked yet, and survivors that change only the wording of a message")
    print('("wording": tests pin a message only where users rely on its words, such as the')
    print("names and URLs it must carry; they are listed below all the same).")
    if unchecked:
        print(f"This run was stopped before it checked {unchecked} mutants: their modules'")
        print("scores are of the mutants checked so far.")
    print()
    if judged:
        print("## Judged survivors\n")
        for name, reason in sorted(judged.items()):
            print(f"- `{name}`: {reason}")
        print()
    logic = [name for name in survivors if name not in wording]
    print(f"## Survivors still to kill ({len(logic)})\n")
    for name in sorted(logic):
        before, after = changes[name]
        print(f"- `{name}`: `{before}` -> `{after}`")
    print(f"\n## Survivors that change only the wording of a message ({len(wording)})\n")
    for name in sorted(wording):
        before, after = changes[name]
        print(f"- `{name}`: `{before}` -> `{after}`")
    print()


_STRING = re.compile(r"""[rbf]{0,2}("[^"]*"|'[^']*')""")


def _change(name: str) -> tuple[str, str]:
    """The first line the mutant removes and the first it adds."""
    diff = subprocess.run([MUTMUT, "show", name], capture_output=True, text=True).stdout
    lines = [line for line in diff.splitlines() if line[:3] not in ("+++", "---")]
    removed = next((line[1:].strip() for line in lines if line.startswith("-")), "")
    added = next((line[1:].strip() for line in lines if line.startswith("+")), "")
    return removed, added


def _only_text(before: str, after: str) -> bool:
    """Whether the two lines differ only in the text of messages: inside string literals
    that hold a space (a key such as "hasZ" has none, and changing it is not wording)."""
    if before == after or _STRING.sub('""', before) != _STRING.sub('""', after):
        return False
    pairs = zip(_STRING.findall(before), _STRING.findall(after), strict=False)
    return all(" " in old for old, new in pairs if old != new)


if __name__ == "__main__":
    main()
