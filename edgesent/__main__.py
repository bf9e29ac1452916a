"""``python -m edgesent``: the same CLI as the ``edgesent`` command.

>>> import subprocess, sys
>>> subprocess.run([sys.executable, "-m", "edgesent", "--version"], capture_output=True,
...                text=True).stdout.startswith("edgesent")
True
"""

from edgesent.cli import main

if __name__ == "__main__":
    main()
