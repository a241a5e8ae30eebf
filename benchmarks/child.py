"""`python -m benchmarks.child module:function JSON`: call one function in a fresh process and
print its result as JSON on the last line (memory figures need a process of their own)."""

import importlib
import json
import sys

if __name__ == "__main__":
    target, kwargs = sys.argv[1], json.loads(sys.argv[2])
    module, _, name = target.partition(":")
    result = getattr(importlib.import_module(module), name)(**kwargs)
    sys.stdout.write("\n" + json.dumps(result) + "\n")
