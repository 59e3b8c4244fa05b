"""esridump from PyPI, measured (run by its own venv).

esridump is synchronous (requests) and, by default, sleeps 10 seconds after every
fifth page to spare the server; ``pause_seconds=0`` measures its speed rather than its
politeness. It asks for pages of 1,000 unless told otherwise; it is told 2,000, as the
others use.
"""

from __future__ import annotations

import _common
from esridump.dumper import EsriDumper

if __name__ == "__main__":
    p = _common.params()
    assert p["scenario"] == "crawl", "esridump only crawls"
    with _common.Tally(p["expected"]) as tally:
        dumper = EsriDumper(
            f"{p['services']}/{p['service']}/0", max_page_size=p["page"], pause_seconds=0
        )
        for feature in dumper:
            tally.add(feature["properties"]["OBJECTID"])
    _common.emit(tally.result())
