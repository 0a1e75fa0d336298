"""Writes the PTX of the gpu.binary in a module lowered with
cubin-format=isa:  extract-ptx.py LOWERED.mlir OUT.ptx"""

import re
import sys

text = open(sys.argv[1]).read()
match = re.search(r'gpu\.binary @\w+.*?assembly = "((?:[^"\\]|\\.)*)"', text)
if not match:
    sys.exit(f"extract-ptx: no PTX in {sys.argv[1]}")
escaped = match.group(1)
ptx = re.sub(r'\\([0-9A-Fa-f]{2})', lambda m: chr(int(m.group(1), 16)), escaped)
open(sys.argv[2], "w").write(ptx)
