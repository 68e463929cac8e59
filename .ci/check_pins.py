#!/usr/bin/env python3
"""Checks that every `name==version` pin of a requirements file is the installed version.

    python3 .ci/check_pins.py [requirements-dev.txt]

Extras (`tritonclient[http,grpc]==2.73.0`) and comments are allowed; a requirement that is not
pinned with `==` is refused, so the file keeps saying exactly what CI runs with. Exits 1 naming
every package that is missing or installed at another version.
"""
import re
import sys
from importlib.metadata import PackageNotFoundError, version

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*==\s*([^\s;#]+)\s*$")


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "requirements-dev.txt"
    bad = []
    n = 0
    with open(path) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.split("#", 1)[0].strip()
            if not line:
                continue
            m = PIN.match(line)
            if not m:
                bad.append(f"{path}:{lineno}: not a name==version pin: {line!r}")
                continue
            name, want = m.group(1), m.group(3)
            n += 1
            try:
                got = version(name)
            except PackageNotFoundError:
                bad.append(f"{name}: pinned {want}, not installed")
                continue
            if got != want:
                bad.append(f"{name}: pinned {want}, installed {got}")
    for b in bad:
        print(b, file=sys.stderr)
    if bad:
        print(f"{len(bad)} of the pins in {path} do not hold", file=sys.stderr)
        return 1
    print(f"{n} pinned packages at their pinned versions ({path})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
