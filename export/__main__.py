"""``python -m edgesent_export``: the ``edgesent`` command line, for launchers that start a
module in each process (``torchrun -m``, ``accelerate launch -m``).

    torchrun --standalone --nproc_per_node 2 -m edgesent_export train runs/teacher \\
        --train reviews.csv --threads 1
"""

from edgesent.cli import main

if __name__ == "__main__":
    main(prog_name="edgesent")
