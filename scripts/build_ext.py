"""Build one of the project's C extensions: ``python scripts/build_ext.py SOURCE.c``.

Run by ``scripts/install``; needs a C compiler (``$CC``, else ``cc``), Python's headers and
the libraries ``EXTENSIONS`` names (their headers). Each extension is one C file with no
build system, written beside its source as ``<stem><EXT_SUFFIX>``; each has a Python
definition that runs when it is not built (the same results, which the tests hold the
two to, only slower):

- ``httpdns/_plainget.c``: the plainest GET and ``/d`` query, scanned (httpdns/plainget.py);
  about 4 us a miss faster.
- ``registry/_rowhash.c``: a store's load loop, hashing and filing the records kept raw
  (``RecordsDecoder.add_hashed``, registry/snapshot.py); a 100,000-service start about a
  second faster. SHA-1 from OpenSSL's libcrypto, as hashlib's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXTENSIONS = {"httpdns/_plainget.c": [], "registry/_rowhash.c": ["-lcrypto"]}


def build(source: str) -> Path:
    """Compile ``source`` (a key of ``EXTENSIONS``) into its package; the built file."""
    src = ROOT / source
    target = src.with_name(src.stem + sysconfig.get_config_var("EXT_SUFFIX"))
    partial = target.with_suffix(".tmp")
    command = [
        *(os.environ.get("CC") or "cc").split(),
        "-shared",
        "-fPIC",
        "-O2",
        "-Wall",
        "-Werror",
        "-I" + sysconfig.get_paths()["include"],
        str(src),
        *EXTENSIONS[source],
        "-o",
        str(partial),
    ]
    subprocess.run(command, check=True)
    partial.replace(target)  # whole or not at all: a running node may have it mapped
    return target


def main() -> None:
    """Build the extension named on the command line."""
    if len(sys.argv) != 2 or sys.argv[1] not in EXTENSIONS:
        sys.exit(f"usage: build_ext.py {{{','.join(EXTENSIONS)}}}")
    print(f"built {build(sys.argv[1])}", file=sys.stderr)


if __name__ == "__main__":
    main()
